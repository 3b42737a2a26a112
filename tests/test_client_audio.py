"""Audio as users have it: formats, rates, channels, integer PCM, corrupt files, path expansion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from canary_triton.client.audio_input import MODEL_RATE, as_audio, decode_bytes, decode_file, expand_paths, from_array
from canary_triton.errors import InputError

RATES = [8000, 16000, 22050, 44100, 48000]


@pytest.fixture(scope="module")
def clip(heldout):
    return heldout[0][0]


def _at(x: np.ndarray, rate: int) -> np.ndarray:
    return x if rate == MODEL_RATE else soxr.resample(x, MODEL_RATE, rate, quality="HQ").astype(np.float32)


def _back(x: np.ndarray, rate: int) -> np.ndarray:
    return x if rate == MODEL_RATE else soxr.resample(x, rate, MODEL_RATE, quality="HQ").astype(np.float32)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(
    "fmt,subtype,tol",
    [
        ("WAV", "PCM_16", 1e-6),
        ("WAV", "PCM_24", 1e-6),
        ("WAV", "FLOAT", 1e-6),
        ("WAV", "PCM_U8", 1e-6),
        ("FLAC", "PCM_16", 1e-6),
        ("FLAC", "PCM_24", 1e-6),
    ],
)
def test_lossless_files_at_any_rate_decode_to_the_expected_samples(tmp_path, clip, rate, fmt, subtype, tol):
    x = _at(clip, rate)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    stored, _ = sf.read(path, dtype="float32")  # what the file holds after quantisation
    want = _back(stored, rate)
    got = decode_file(path)
    assert got.samples.dtype == np.float32 and got.samples.ndim == 1
    assert len(got.samples) == len(want)
    np.testing.assert_allclose(got.samples, want, atol=tol)
    # and the file is the clip (band-limited to the file's rate): quantisation error only
    band_limited = _back(x, rate)
    bound = 0.02 if subtype == "PCM_U8" else 2e-4
    assert np.max(np.abs(got.samples - band_limited)) < bound


def test_integer_pcm_scaling_as_wav_readers_do():
    a = from_array(np.array([0, 16384, -32768, 32767], np.int16), MODEL_RATE)
    np.testing.assert_allclose(a.samples, [0, 0.5, -1.0, 32767 / 32768], atol=1e-7)
    b = from_array(np.array([0, 1 << 30], np.int32), MODEL_RATE)
    np.testing.assert_allclose(b.samples, [0, 0.5], atol=1e-7)
    c = from_array(np.array([128, 192, 0], np.uint8), MODEL_RATE)
    np.testing.assert_allclose(c.samples, [0, 0.5, -1.0], atol=1e-7)


@pytest.mark.parametrize("layout", ["samples_x_channels", "channels_first"])
def test_stereo_and_multichannel_are_averaged(tmp_path, clip, layout):
    stereo = np.stack([clip, 0.5 * clip], axis=1)
    a = from_array(stereo if layout == "samples_x_channels" else stereo.T, MODEL_RATE)
    np.testing.assert_allclose(a.samples, 0.75 * clip, atol=1e-6)
    six = np.stack([clip * k / 6 for k in range(6)], axis=1).astype(np.float32)
    sf.write(tmp_path / "six.wav", six, 48000, subtype="FLOAT")
    got = decode_file(tmp_path / "six.wav").samples
    np.testing.assert_allclose(got, _back(six.mean(axis=1), 48000), atol=1e-6)


def _aligned_snr_db(ref: np.ndarray, got: np.ndarray, max_lag: int = 4000) -> float:
    n = min(len(ref), len(got)) - max_lag
    best = -np.inf
    for lag in range(-max_lag, max_lag + 1, 1):
        a = ref[max_lag : max_lag + n - max_lag]
        b = got[max_lag + lag : max_lag + lag + n - max_lag]
        if len(b) != len(a):
            continue
        c = float(np.dot(a, b))
        if c > best:
            best, best_lag = c, lag
    a = ref[max_lag : max_lag + n - max_lag]
    b = got[max_lag + best_lag : max_lag + best_lag + n - max_lag]
    return 10 * np.log10(np.sum(a * a) / max(np.sum((a - b) ** 2), 1e-12))


@pytest.mark.parametrize(
    "fmt,subtype,rate,ext",
    [
        ("OGG", "VORBIS", 44100, "ogg"),
        ("OGG", "OPUS", 48000, "opus"),
        ("MP3", "MPEG_LAYER_III", 44100, "mp3"),
        ("MP3", "MPEG_LAYER_III", 16000, "mp3"),
    ],
)
def test_lossy_files_decode_close_to_the_original(tmp_path, clip, fmt, subtype, rate, ext):
    x = np.concatenate([np.zeros(8000, np.float32), clip, np.zeros(8000, np.float32)])
    path = tmp_path / f"a.{ext}"
    sf.write(path, _at(x, rate), rate, format=fmt, subtype=subtype)
    got = decode_file(path).samples
    assert abs(len(got) - len(x)) < 0.1 * MODEL_RATE  # codec padding only
    assert _aligned_snr_db(x, got) > 12.0
    assert decode_bytes(path.read_bytes(), "mem").samples.shape == got.shape


def test_bytes_and_tuples_and_paths_give_the_same_samples(tmp_path, clip):
    sf.write(tmp_path / "a.flac", clip, MODEL_RATE, subtype="PCM_24")
    from_path = as_audio(tmp_path / "a.flac").samples
    from_str = as_audio(str(tmp_path / "a.flac")).samples
    from_bytes = as_audio((tmp_path / "a.flac").read_bytes()).samples
    np.testing.assert_array_equal(from_path, from_str)
    np.testing.assert_array_equal(from_path, from_bytes)
    from_tuple = as_audio((_at(clip, 22050), 22050)).samples
    np.testing.assert_allclose(from_tuple, _back(_at(clip, 22050), 22050), atol=1e-6)


def test_corrupt_and_missing_files_are_named(tmp_path, monkeypatch):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no ffmpeg: libsndfile's reason is reported
    with pytest.raises(InputError, match="broken.wav"):
        decode_file(bad)
    with pytest.raises(InputError, match="nope.flac does not exist"):
        decode_file(tmp_path / "nope.flac")
    with pytest.raises(InputError, match="empty"):
        decode_bytes(b"")
    with pytest.raises(InputError, match="cannot use dict"):
        as_audio({"a": 1})


def _fake_ffmpeg(bin_dir, monkeypatch):
    """An `ffmpeg` on PATH that decodes this test's headerless float32 `.raw` files (and fails on
    anything else with ffmpeg's kind of message), to exercise the fallback's plumbing anywhere."""
    script = bin_dir / "ffmpeg"
    script.write_text(f"""#!{sys.executable}
import sys, numpy as np, soundfile as sf
args = sys.argv[1:]
src, out = args[args.index("-i") + 1], args[-1]
if not src.endswith(".raw"):
    sys.stderr.write(src + ": Invalid data found when processing input\\n"); sys.exit(1)
sf.write(out, np.fromfile(src, dtype="<f4"), 16000, subtype="FLOAT")
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_formats_libsndfile_cannot_read_go_through_ffmpeg(tmp_path, clip, monkeypatch):
    real = shutil.which("ffmpeg")
    if real:  # the real thing where it is installed (it is on the development machines)
        wav = tmp_path / "a.wav"
        sf.write(wav, clip, MODEL_RATE, subtype="PCM_16")
        m4a = tmp_path / "a.m4a"
        subprocess.run(
            [real, "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True
        )
        got = decode_file(m4a).samples
        assert (
            _aligned_snr_db(
                np.concatenate([np.zeros(4000, np.float32), clip]), np.concatenate([np.zeros(4000, np.float32), got])
            )
            > 12.0
        )
    (tmp_path / "bin").mkdir()
    _fake_ffmpeg(tmp_path / "bin", monkeypatch)
    clip.astype("<f4").tofile(tmp_path / "a.raw")
    np.testing.assert_array_equal(decode_file(tmp_path / "a.raw").samples, clip)
    (tmp_path / "c.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A garbage")
    with pytest.raises(InputError, match="c.m4a.*Invalid data"):
        decode_file(tmp_path / "c.m4a")


def test_expand_paths_takes_files_globs_and_folders(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.wav", "d/a.flac", "d/sub/c.mp3", "d/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    got = expand_paths([tmp_path / "d"])
    assert [p.name for p in got] == ["a.flac", "b.wav", "c.mp3"]
    assert [p.name for p in expand_paths([str(tmp_path / "d" / "*.wav"), tmp_path / "d" / "b.wav"])] == ["b.wav"]
    assert [p.name for p in expand_paths([str(tmp_path / "**" / "*.mp3")])] == ["c.mp3"]
    with pytest.raises(InputError, match="matches no audio"):
        expand_paths([str(tmp_path / "*.ogg")])
