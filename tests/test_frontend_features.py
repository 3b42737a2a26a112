"""The project's mel front end against NeMo's preprocessor, 0.1 s to 40 s, single and batched."""

from __future__ import annotations

import pytest
import torch

from canary_triton.checkpoint.oracle import pad_batch
from canary_triton.frontend.features import MelFrontEnd

from .conftest import speechlike

SECONDS = [0.1, 0.37, 1.0, 2.5, 7.31, 13.0, 25.0, 40.0]


@pytest.fixture(scope="module")
def front_end(oracle_random):
    info = oracle_random.info
    return MelFrontEnd.from_safetensors(info.mel, info.paths.weights)


@pytest.mark.parametrize("seconds", SECONDS)
def test_single_clip_equals_nemo(front_end, oracle_random, seconds):
    clip = speechlike(seconds, seed=int(seconds * 100))
    audio, lens = pad_batch([clip])
    ours, ours_len = front_end(audio, lens)
    ref, ref_len = oracle_random.mel(audio, lens)
    assert torch.equal(ours_len, ref_len)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-4


def test_padded_batch_equals_nemo_and_each_clip_alone(front_end, oracle_random):
    # Lengths that are not multiples of the hop, mixed in one zero-padded batch.
    clips = [speechlike(s, seed=i) for i, s in enumerate([0.1003, 3.21, 40.0, 0.9999, 12.345])]
    audio, lens = pad_batch(clips)
    ours, ours_len = front_end(audio, lens)
    ref, ref_len = oracle_random.mel(audio, lens)
    assert torch.equal(ours_len, ref_len)
    assert (ours - ref).abs().max().item() <= 1e-4
    for i, clip in enumerate(clips):
        alone, alone_len = front_end(*pad_batch([clip]))
        n = int(alone_len[0])
        assert n == int(ours_len[i])
        assert (alone[0, :, :n] - ours[i, :, :n]).abs().max().item() <= 1e-4
        assert ours[i, :, n:].abs().sum().item() == 0.0


def test_front_end_uses_the_checkpoints_bf16_filterbank(front_end, oracle_random):
    featurizer = oracle_random.model.perception.preprocessor.featurizer
    fb = featurizer.fb[0]
    assert torch.equal(front_end.fb, fb)
    assert torch.equal(front_end.window, featurizer.window)
    # Stored BF16-rounded, as in the real checkpoint; a fresh librosa filterbank differs.
    assert torch.equal(fb, fb.to(torch.bfloat16).float())
    import librosa  # lazy: librosa (numba) imports in seconds

    fresh = torch.tensor(librosa.filters.mel(sr=16000, n_fft=512, n_mels=128, fmin=0, fmax=8000, norm="slaney"))
    assert (fresh.float() - fb).abs().max().item() > 1e-5


def test_short_clips_edge_cases(front_end, oracle_random):
    # Fewer samples than one hop, exactly one hop, one frame + 1 sample.
    for n in (1, 159, 160, 161, 320):
        audio, lens = pad_batch([speechlike(n / 16000, seed=n)])
        ours, ours_len = front_end(audio, lens)
        ref, ref_len = oracle_random.mel(audio, lens)
        assert torch.equal(ours_len, ref_len)
        assert torch.allclose(ours, ref, atol=1e-4, rtol=0, equal_nan=True)
