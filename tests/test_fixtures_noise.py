"""canary_triton/fixtures/noise.py: the seeded non-speech audio the VAD, gate and long-form tests
use, and mixing at a signal-to-noise ratio."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton.fixtures import noise as nz

SR = nz.SAMPLE_RATE
GENERATORS = [nz.white_noise, nz.pink_noise, nz.near_silence_with_clicks, nz.synthetic_music]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


@pytest.mark.parametrize("make", GENERATORS, ids=lambda f: f.__name__)
def test_each_is_float32_of_its_length_and_the_same_for_the_same_seed(make):
    a = make(1.5, seed=3)
    assert a.dtype == np.float32 and a.shape == (int(1.5 * SR),) and np.isfinite(a).all()
    assert np.array_equal(a, make(1.5, seed=3)) and not np.array_equal(a, make(1.5, seed=4))
    assert np.abs(a).max() < 1.0  # no clipping


def test_white_and_pink_noise_have_the_asked_level():
    assert rms(nz.white_noise(2.0, 1, level=0.05)) == pytest.approx(0.05, rel=0.02)
    assert rms(nz.pink_noise(2.0, 1, level=0.2)) == pytest.approx(0.2, rel=1e-4)


def test_pink_noise_power_falls_as_one_over_frequency():
    x = nz.pink_noise(8.0, 2).astype(np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    bands = [(50, 100), (500, 1000), (5000, 7900)]  # octave-ish bands: power per Hz
    density = [power[(f >= lo) & (f < hi)].mean() for lo, hi in bands]
    slopes = [np.log10(density[i + 1] / density[i]) / np.log10(bands[i + 1][0] / bands[i][0]) for i in range(2)]
    assert all(-1.2 < s < -0.8 for s in slopes), slopes
    assert abs(x.mean()) < 1e-9  # no DC


def test_near_silence_is_a_faint_hiss_with_loud_short_clicks():
    x = nz.near_silence_with_clicks(4.0, 5, clicks_per_s=2.0)
    loud = np.abs(x) > 0.1
    assert 0.0 < loud.mean() < 0.005  # a few ms of clicks in 4 s
    # the hiss between them: about -70 dBFS (3e-4 RMS)
    quiet = x[~np.convolve(loud, np.ones(200), "same").astype(bool)]
    assert 2e-4 < rms(quiet) < 4e-4
    starts = np.flatnonzero(loud[1:] & ~loud[:-1])
    assert 1 <= len(starts) <= 8  # at most the 8 clicks asked for (two may overlap)


@pytest.mark.parametrize("bpm", [120.0, 90.0])
def test_synthetic_music_has_its_level_and_its_tempo(bpm):
    x = nz.synthetic_music(4.0, 6, bpm=bpm)
    assert rms(x) == pytest.approx(0.15, rel=1e-4)
    frame = SR // 100  # a 10 ms energy envelope: its strongest rhythm is a chord every two beats
    env = np.array([rms(x[i : i + frame]) for i in range(0, len(x) - frame, frame)])
    spectrum = np.abs(np.fft.rfft(env - env.mean()))
    freqs = np.fft.rfftfreq(len(env), 0.01)
    above = freqs > 0.5
    assert freqs[above][np.argmax(spectrum[above])] == pytest.approx(bpm / 60 / 2, abs=0.05)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
def test_mix_at_snr_gives_the_asked_ratio(snr_db):
    speech = nz.synthetic_music(1.0, 7)
    noise = nz.white_noise(1.0, 8)
    mix = nz.mix_at_snr(speech, noise, snr_db)
    added = mix.astype(np.float64) - speech
    assert mix.dtype == np.float32 and len(mix) == len(speech)
    assert 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added**2)) == pytest.approx(snr_db, abs=0.01)


def test_short_noise_is_tiled_and_the_mask_picks_the_speech():
    speech = np.zeros(SR, np.float32)
    speech[: SR // 4] = 0.5  # speech in the first quarter only
    noise = nz.white_noise(0.1, 9)  # a tenth of the length: repeated
    mask = np.zeros(SR, bool)
    mask[: SR // 4] = True
    mixed = nz.mix_at_snr(speech, noise, 0.0, speech_mask=mask).astype(np.float64)
    added = mixed - speech
    assert np.allclose(added[: len(noise)], added[len(noise) : 2 * len(noise)])
    # over the masked samples the speech power is 0.25, so the noise power is 0.25 at 0 dB
    assert np.mean(added**2) == pytest.approx(0.25, rel=1e-3)
    unmasked = nz.mix_at_snr(speech, noise, 0.0).astype(np.float64) - speech  # power over all: 0.0625
    assert np.mean(unmasked**2) == pytest.approx(0.0625, rel=1e-3)
