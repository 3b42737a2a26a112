"""The `preprocessor` model in-process (fake pb_utils): outputs, per-request errors, the VAD gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canary_triton import contract as C
from canary_triton.frontend.preprocess import asr_output_limit
from canary_triton.triton_models.preprocessor import PreprocessorModel

from .conftest import SR, speechlike
from .fake_pb_utils import error_of, load_model


def _load(exported, **parameters):
    threads = torch.get_num_threads()
    try:
        return load_model(PreprocessorModel, exported / "model_repository", C.PREPROCESSOR_MODEL, parameters=parameters)
    finally:
        torch.set_num_threads(threads)  # initialize sets the process's torch threads


@pytest.fixture(scope="module")
def pre(exported_trained):
    return _load(exported_trained)


def _request(m, audio, max_new_tokens=None):
    inputs = {C.AUDIO.name: audio[None]}
    if max_new_tokens is not None:
        inputs[C.MAX_NEW_TOKENS.name] = np.array([[max_new_tokens]], np.int32)
    return m.pb.request(inputs)


def test_outputs_of_a_batch_match_the_preprocessor_alone(pre):
    clips = [speechlike(0.7, 1), speechlike(2.3, 2)]
    out = pre.execute([_request(pre, clips[0]), _request(pre, np.zeros(5, np.float32)), _request(pre, clips[1], 7)])
    assert error_of(out[1]) == (
        "INVALID_ARG",
        f"input 'audio' has 5 samples; at least {pre.pre.limits.min_samples} "
        f"({pre.pre.limits.min_samples / SR:g} s at {SR} Hz) are needed",
    )
    for response, clip, asked in ((out[0], clips[0], C.DEFAULT_MAX_NEW_TOKENS), (out[2], clips[1], 7)):
        got = response.outputs()
        alone = pre.pre([clip])[0]
        assert [t.name() for t in response.output_tensors()] == [
            C.MEL.name,
            C.MEL_LENGTH.name,
            C.INPUT_IDS.name,
            C.INPUT_LENGTHS.name,
            C.REQUEST_OUTPUT_LEN.name,
            C.END_ID.name,
            C.PAD_ID.name,
        ]
        np.testing.assert_allclose(got[C.MEL.name], alone.mel[None], atol=1e-5)
        assert got[C.MEL_LENGTH.name].tolist() == [[alone.mel_length]] and got[C.MEL_LENGTH.name].dtype == np.int64
        assert np.array_equal(got[C.INPUT_IDS.name], alone.input_ids[None])
        assert got[C.INPUT_LENGTHS.name].tolist() == [[len(alone.input_ids)]]
        assert got[C.REQUEST_OUTPUT_LEN.name].tolist() == [[asr_output_limit(asked, len(clip), SR)]]
        assert got[C.END_ID.name].tolist() == [[pre.ids.eos]] and got[C.PAD_ID.name].tolist() == [[pre.ids.pad]]
        assert all(got[n].dtype == np.int32 for n in (C.INPUT_LENGTHS.name, C.REQUEST_OUTPUT_LEN.name, C.END_ID.name))


def test_missing_audio_and_bad_max_new_tokens(pre):
    out = pre.execute([pre.pb.request({}), _request(pre, speechlike(1.0, 3), 0)])
    assert error_of(out[0]) == ("INVALID_ARG", "input 'audio' is required")
    assert error_of(out[1]) == (
        "INVALID_ARG",
        f"input 'max_new_tokens' is 0; it must be between 1 and {C.MAX_NEW_TOKENS_LIMIT}",
    )


def test_vad_gate_marks_a_clip_without_speech(exported_trained, heldout):
    gated = _load(exported_trained, vad_gate="true")
    out = gated.execute([_request(gated, np.zeros(SR, np.float32)), _request(gated, heldout[0][0])])
    assert out[0].outputs()[C.REQUEST_OUTPUT_LEN.name].tolist() == [[C.NO_SPEECH_OUTPUT_LEN]]
    assert out[1].outputs()[C.REQUEST_OUTPUT_LEN.name].tolist() != [[C.NO_SPEECH_OUTPUT_LEN]]
