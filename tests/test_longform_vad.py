"""Silero VAD on ONNX Runtime (canary_triton.longform.vad) against the silero-vad package's own
implementation, and the no-speech audio it must reject."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from canary_triton import contract as C
from canary_triton.cli import main
from canary_triton.errors import CanaryTritonError
from canary_triton.export.repository import RepositoryOptions, describe, render
from canary_triton.fixtures import noise
from canary_triton.longform import vad
from canary_triton.longform.segmenter import SegmentOptions, speech_regions, split
from canary_triton.model_params import LongFormParams

from .conftest import SR
from .sample_export import sample_manifest
from .test_longform_segmenter import long_recording


@pytest.fixture(scope="module")
def recordings(heldout):
    clean, _, _ = long_recording(heldout, 25, seed=11, pauses=(0.2, 2.0))
    noisy = noise.mix_at_snr(clean, noise.pink_noise(len(clean) / SR, 3), 5.0, np.abs(clean) > 1e-3)
    odd = clean[: 7 * SR + 123]  # not a whole number of windows
    return {"clean": clean, "pink 5 dB": noisy, "odd length": odd, "one clip": heldout[4][0]}


def test_probabilities_equal_the_packages_streaming_implementation(recordings):
    """The package's OnnxWrapper (stock streaming model, one window per call, torch) vs ours
    (the sequence export, numpy framing)."""
    from silero_vad.utils_vad import OnnxWrapper  # lazy: the silero_vad package is only the reference here

    ref_model = OnnxWrapper(str(vad.model_path(vad.STREAMING_MODEL)), force_onnx_cpu=True)
    ours = vad.SileroVad()
    for name, audio in recordings.items():
        ref = ref_model.audio_forward(torch.from_numpy(audio), SR).numpy().reshape(-1)
        got = ours.probabilities(audio)
        assert got.shape == ref.shape == (-(-len(audio) // vad.WINDOW),), name
        assert np.max(np.abs(got - ref)) <= 1e-5, (name, float(np.max(np.abs(got - ref))))


@pytest.mark.parametrize("threshold,min_speech_s,min_silence_s", [(0.5, 0.25, 0.1), (0.3, 0.1, 0.3), (0.7, 0.5, 0.2)])
def test_regions_equal_the_packages_timestamps(recordings, threshold, min_speech_s, min_silence_s):
    from silero_vad.utils_vad import get_speech_timestamps_from_probs  # lazy, as above

    ours = vad.SileroVad()
    for name, audio in recordings.items():
        probs = ours.probabilities(audio)
        ref = get_speech_timestamps_from_probs(
            probs.tolist(),
            sampling_rate=SR,
            threshold=threshold,
            min_speech_duration_ms=1000 * min_speech_s,
            min_silence_duration_ms=1000 * min_silence_s,
            speech_pad_ms=0,
            audio_length_samples=len(audio),
        )
        got = vad.regions_from_probs(probs, len(audio), threshold, min_speech_s, min_silence_s)
        assert got == [(d["start"], d["end"]) for d in ref], name


NO_SPEECH = {
    "near-silence with clicks": noise.near_silence_with_clicks,
    "pink noise": noise.pink_noise,
    "synthetic music": noise.synthetic_music,
    "white noise": noise.white_noise,
}


@pytest.mark.parametrize("kind", sorted(NO_SPEECH))
def test_no_speech_gives_no_segment_with_silero(kind):
    audio = NO_SPEECH[kind](60, seed=2)
    assert split(audio, SR) == []


def test_the_energy_detector_takes_clicks_and_noise_for_speech():
    """Why Silero is the default: the energy detector sends these to the model."""
    energy = SegmentOptions(vad="energy")
    assert speech_regions(noise.near_silence_with_clicks(30, seed=2), SR, energy)
    assert speech_regions(noise.pink_noise(30, seed=2), SR, energy)


def test_the_model_file_comes_from_the_installed_package():
    path = vad.model_path()
    assert path.name == vad.SEQUENCE_MODEL and path.is_file()
    assert "site-packages" in str(path) or "dist-packages" in str(path)  # not a copy in the repository


def test_silero_wants_16_khz():
    with pytest.raises(ValueError, match="16000 Hz"):
        split(np.zeros(8000, np.float32), 8000)


def test_segmenter_options_are_rendered_into_both_long_form_models():
    manifest = sample_manifest()
    opts = RepositoryOptions(
        long_form_merge_s=12.0,
        long_form_vad="energy",
        long_form_vad_threshold=0.3,
        long_form_vad_min_silence_s=0.4,
        long_form_silence_pad_s=0.2,
    )
    decls = {d.name: d for d in describe(manifest, "cpu", opts)}
    want = SegmentOptions(merge_s=12.0, vad="energy", vad_threshold=0.3, min_pause_s=0.4, silence_pad_s=0.2)
    for name in (C.LONG_FORM_MODEL, C.LONG_FORM_STREAM_MODEL):
        assert LongFormParams.from_parameters(decls[name].parameters).segment == want
        assert 'key: "segment.vad" value: { string_value: "energy" }' in render(decls[name])
    assert opts.long_form_segment() == want
    assert RepositoryOptions().long_form_segment() == SegmentOptions()  # one set of defaults


def test_bad_segmenter_options_are_one_line_errors_naming_the_option(capsys, tmp_path):
    for field, value, message in (
        ("long_form_vad_threshold", 1.5, r"vad_threshold must be in \(0, 1\)"),
        ("long_form_vad_min_speech_s", -1.0, "min_speech_s must be >= 0"),
        ("long_form_vad_min_silence_s", -0.1, "min_pause_s must be >= 0"),
        ("long_form_vad_pad_s", -0.1, "pad_s must be >= 0"),
        ("long_form_merge_s", 41.0, r"merge_s must be in \(0, max_segment_s=40\]"),
    ):
        with pytest.raises(CanaryTritonError, match="long-form segmenter: " + message):
            RepositoryOptions(**{field: value}).long_form_segment()
    for flag, value, message in (
        ("--vad-threshold", "0", "must be in (0, 1), got 0"),
        ("--vad-min-speech-ms", "-5", "must be >= 0 ms"),
        ("--vad-min-silence-ms", "-5", "must be >= 0 ms"),
        ("--vad-speech-pad-ms", "-5", "must be >= 0 ms"),
        ("--long-form-merge-seconds", "41", "must be in (0, 40] seconds"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["export", "ckpt", "-o", str(tmp_path / "out"), flag, value])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("canary-triton export: error: argument " + flag) and message in err, err


def test_one_session_serves_concurrent_calls(recordings):
    v = vad.SileroVad()
    audios = list(recordings.values()) * 2
    alone = [v.probabilities(a) for a in audios]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(v.probabilities, audios))
    assert all(np.array_equal(x, y) for x, y in zip(alone, together))
