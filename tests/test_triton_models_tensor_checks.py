"""canary_triton/triton_models/tensor_checks.py: what a direct caller of encoder, projector or postprocessor may
send; each refusal names the input and the limit."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.errors import InputError
from canary_triton.triton_models.tensor_checks import check_encoded, check_mel, check_output_ids

N_MELS, MAX_FRAMES, DIM, VOCAB = 8, 20, 4, 50


def mel(frames: int = 10, n_mels: int = N_MELS, batch: int = 1, dtype=np.float32) -> np.ndarray:
    return np.arange(batch * n_mels * frames, dtype=dtype).reshape(batch, n_mels, frames)


def test_a_valid_mel_comes_back_without_its_batch_dimension_with_its_length():
    m = mel(10)
    out, n = check_mel(m, np.array([[7]], dtype=np.int64), N_MELS, MAX_FRAMES)
    assert out.shape == (N_MELS, 10) and np.array_equal(out, m[0]) and n == 7
    # both ends of each range are accepted
    assert check_mel(mel(1), np.array([1]), N_MELS, MAX_FRAMES)[1] == 1
    assert check_mel(mel(MAX_FRAMES), np.array([MAX_FRAMES]), N_MELS, MAX_FRAMES)[1] == MAX_FRAMES


@pytest.mark.parametrize(
    "array,length,message",
    [
        (mel(dtype=np.float64), [5], "input 'mel' must be FP32, got float64"),
        (np.full((1, N_MELS, 4), np.nan, np.float32), [2], "input 'mel' contains NaN or Inf"),
        (mel(n_mels=N_MELS + 1), [5], f"input 'mel' must have shape [1, {N_MELS}, frames], got [1, {N_MELS + 1}, 10]"),
        (mel(batch=2), [5], f"must have shape [1, {N_MELS}, frames], got [2, {N_MELS}, 10]"),
        (mel()[0], [5], f"must have shape [1, {N_MELS}, frames], got [{N_MELS}, 10]"),
        (
            mel(MAX_FRAMES + 1),
            [5],
            f"input 'mel' has {MAX_FRAMES + 1} frames; the limit is 1..{MAX_FRAMES} ({C.MAX_AUDIO_SECONDS:g} s)",
        ),
        (mel(10), [0], "input 'mel_length' must be one value in 1..10 (the mel's frames), got [0]"),
        (mel(10), [11], "must be one value in 1..10 (the mel's frames), got [11]"),
        (mel(10), [3, 4], "must be one value in 1..10 (the mel's frames), got [3, 4]"),
    ],
)
def test_bad_mel_is_refused_naming_the_input_and_the_limit(array, length, message):
    with pytest.raises(InputError) as e:
        check_mel(array, np.array(length), N_MELS, MAX_FRAMES)
    assert message in str(e.value)


def test_a_valid_encoder_output_comes_back_without_its_batch_dimension():
    enc = np.ones((1, MAX_FRAMES, DIM), np.float32)
    assert check_encoded(enc, DIM, MAX_FRAMES).shape == (MAX_FRAMES, DIM)
    assert check_encoded(enc[:, :1], DIM, MAX_FRAMES).shape == (1, DIM)


@pytest.mark.parametrize(
    "array,message",
    [
        (np.ones((1, 3, DIM), np.float16), "input 'encoded' must be FP32, got float16"),
        (np.full((1, 3, DIM), np.inf, np.float32), "input 'encoded' contains NaN or Inf"),
        (
            np.ones((1, 3, DIM + 1), np.float32),
            f"input 'encoded' must have shape [1, frames, {DIM}], got [1, 3, {DIM + 1}]",
        ),
        (np.ones((2, 3, DIM), np.float32), f"must have shape [1, frames, {DIM}], got [2, 3, {DIM}]"),
        (np.ones((1, 0, DIM), np.float32), f"input 'encoded' has 0 frames; the limit is 1..{MAX_FRAMES}"),
        (np.ones((1, MAX_FRAMES + 1, DIM), np.float32), f"has {MAX_FRAMES + 1} frames; the limit is 1..{MAX_FRAMES}"),
    ],
)
def test_bad_encoder_output_is_refused_naming_the_input_and_the_limit(array, message):
    with pytest.raises(InputError) as e:
        check_encoded(array, DIM, MAX_FRAMES)
    assert message in str(e.value)


def test_output_ids_are_beam_zero_cut_to_its_length():
    ids = np.array([[[5, 6, 7, 0], [9, 9, 9, 9]]], np.int32)  # [1, beams 2, L 4]
    assert check_output_ids(ids, np.array([[3, 4]]), VOCAB) == [5, 6, 7]
    assert check_output_ids(ids, np.array([[0, 4]]), VOCAB) == []  # nothing generated is valid
    assert check_output_ids(ids, np.array([[4, 4]]), VOCAB) == [5, 6, 7, 0]
    # ids past the length are not checked: padding may hold anything
    assert check_output_ids(np.array([[[1, -1, VOCAB]]], np.int32), np.array([[1]]), VOCAB) == [1]


@pytest.mark.parametrize(
    "ids,lengths,message",
    [
        (np.zeros((1, 4), np.int32), [[4]], "input 'output_ids' must have shape [1, beams, length], got [1, 4]"),
        (np.zeros((2, 1, 4), np.int32), [[4]], "must have shape [1, beams, length], got [2, 1, 4]"),
        (np.zeros((1, 0, 4), np.int32), [[4]], "must have shape [1, beams, length], got [1, 0, 4]"),
        (np.zeros((1, 1, 4), np.int32), [[5]], "input 'sequence_length' must be in 0..4 (the ids' length), got [5]"),
        (np.zeros((1, 1, 4), np.int32), [[-1]], "must be in 0..4 (the ids' length), got [-1]"),
        (np.zeros((1, 1, 4), np.int32), np.zeros((1, 0)), "must be in 0..4 (the ids' length), got []"),
        (
            np.array([[[1, VOCAB]]], np.int32),
            [[2]],
            f"input 'output_ids' holds ids outside 0..{VOCAB - 1} (min 1, max {VOCAB})",
        ),
        (np.array([[[-3, 2]]], np.int32), [[2]], f"holds ids outside 0..{VOCAB - 1} (min -3, max 2)"),
    ],
)
def test_bad_output_ids_are_refused_naming_the_input_and_the_limit(ids, lengths, message):
    with pytest.raises(InputError) as e:
        check_output_ids(ids, np.asarray(lengths), VOCAB)
    assert message in str(e.value)
