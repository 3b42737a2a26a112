"""Silero VAD on ONNX Runtime (canary_triton.vad) against the silero-vad package's own
implementation, and the no-speech audio it must reject."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import vad
from canary_triton.fixtures import noise
from canary_triton.segmenter import SegmentOptions, speech_regions, split

from .conftest import SR
from .test_segmenter import long_recording


@pytest.fixture(scope="module")
def recordings(heldout):
    clean, _, _ = long_recording(heldout, 25, seed=11, pauses=(0.2, 2.0))
    noisy = noise.mix_at_snr(clean, noise.pink_noise(len(clean) / SR, 3), 5.0, np.abs(clean) > 1e-3)
    odd = clean[: 7 * SR + 123]  # not a whole number of windows
    return {"clean": clean, "pink 5 dB": noisy, "odd length": odd, "one clip": heldout[4][0]}


def test_probabilities_equal_the_packages_streaming_implementation(recordings):
    """The package's OnnxWrapper (stock streaming model, one window per call, torch) vs ours
    (the sequence export, numpy framing)."""
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    ref_model = OnnxWrapper(str(vad.model_path(vad.STREAMING_MODEL)), force_onnx_cpu=True)
    ours = vad.SileroVad()
    for name, audio in recordings.items():
        ref = ref_model.audio_forward(torch.from_numpy(audio), SR).numpy().reshape(-1)
        got = ours.probabilities(audio)
        assert got.shape == ref.shape == (-(-len(audio) // vad.WINDOW),), name
        assert np.max(np.abs(got - ref)) <= 1e-5, (name, float(np.max(np.abs(got - ref))))


@pytest.mark.parametrize("threshold,min_speech_s,min_silence_s", [(0.5, 0.25, 0.1), (0.3, 0.1, 0.3), (0.7, 0.5, 0.2)])
def test_regions_equal_the_packages_timestamps(recordings, threshold, min_speech_s, min_silence_s):
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    ours = vad.SileroVad()
    for name, audio in recordings.items():
        probs = ours.probabilities(audio)
        ref = get_speech_timestamps_from_probs(
            probs.tolist(), sampling_rate=SR, threshold=threshold, min_speech_duration_ms=1000 * min_speech_s,
            min_silence_duration_ms=1000 * min_silence_s, speech_pad_ms=0, audio_length_samples=len(audio))
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
