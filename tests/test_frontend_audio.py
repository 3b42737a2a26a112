"""canary_triton/frontend/audio.py: audio files and arrays to the model's 16 kHz mono float32."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from canary_triton.errors import InputError
from canary_triton.frontend.audio import load_audio, to_model_rate

SR = 16000


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_mono_float32_at_the_model_rate_is_returned_unchanged():
    x = tone(0.5, SR)
    y = to_model_rate(x, SR, SR)
    assert y.dtype == np.float32 and y.shape == x.shape and np.array_equal(x, y)


def test_integer_samples_are_scaled_to_minus_one_one():
    pcm = np.array([0, 16384, -16384, 32767, -32768], dtype=np.int16)
    y = to_model_rate(pcm, SR, SR)
    assert y.dtype == np.float32
    assert y.tolist() == [0.0, 0.5, -0.5, 32767 / 32768, -1.0]
    assert to_model_rate(np.array([1 << 30], dtype=np.int32), SR, SR).tolist() == [0.5]


def test_channels_last_are_averaged_to_mono():
    left, right = tone(0.25, SR, 300.0), tone(0.25, SR, 500.0)
    y = to_model_rate(np.stack([left, right], axis=1), SR, SR)
    assert y.shape == left.shape and np.allclose(y, (left + right) / 2, atol=1e-7)


def test_more_than_two_dimensions_is_an_error_naming_the_shape():
    with pytest.raises(InputError, match=r"1-D \(mono\) or 2-D \(samples x channels\), got shape \(2, 3, 4\)"):
        to_model_rate(np.zeros((2, 3, 4), np.float32), SR, SR)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_to_the_target_length_and_keep_the_tone(rate):
    y = to_model_rate(tone(1.0, rate), rate, SR)
    assert y.dtype == np.float32 and abs(len(y) - SR) <= 1
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * SR / len(y) - 440.0) < 2.0  # the same pitch, at 16 kHz
    assert 0.45 < np.abs(y[SR // 4 : -SR // 4]).max() < 0.55  # and the same level


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("WAV", "FLOAT")])
def test_a_file_is_read_downmixed_and_resampled(tmp_path, fmt, subtype):
    stereo = np.stack([tone(0.5, 48000, 300.0), tone(0.5, 48000, 300.0)], axis=1)
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(str(path), stereo, 48000, format=fmt, subtype=subtype)
    y = load_audio(path, SR)
    assert y.dtype == np.float32 and y.ndim == 1 and abs(len(y) - SR // 2) <= 1
    assert np.allclose(y, to_model_rate(tone(0.5, 48000, 300.0), 48000, SR), atol=1e-3)


def test_an_undecodable_file_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(InputError, match=re.escape(f"cannot decode audio file {bad}: ")):
        load_audio(bad, SR)
    with pytest.raises(InputError, match="cannot decode audio file .*missing.flac"):
        load_audio(tmp_path / "missing.flac", SR)
