"""The bad-input matrix (tests/bad_inputs.py) at the models' level: every case sent in-process
(fake pb_utils) to the Python model that answers it when served (the `canary_qwen` cases through
its ensemble steps), each answered INVALID_ARG with the message naming the input and limit."""

from __future__ import annotations

import pytest

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.runtime.loaders import export_mel_params

from .bad_inputs import cases
from .fake_pb_utils import Tensor, error_of
from .inprocess import InProcess

#: Answered by Triton core before any model sees the request (an input the config does not
#: declare; an ensemble input missing): no model-level counterpart. The served matrix has them.
TRITON_CORE_ONLY = {"unknown_input", "missing_audio"}

IDS = [c.id for c in cases(448, 128, 128, 4001) if c.id not in TRITON_CORE_ONLY]


@pytest.fixture(scope="module")
def served(exported_trained):
    s = InProcess(exported_trained)
    yield s
    s.close()


@pytest.fixture(scope="module")
def matrix(exported_trained):
    m = ExportManifest.read(exported_trained)
    mel = export_mel_params(exported_trained)
    n_mels, enc_dim = mel.n_mels, m.model.encoder_dim
    max_frames = C.num_mel_frames(C.max_audio_samples(mel), mel) + 1
    # Triton's own shape check answers these first when served; the model's check, in-process:
    model_level = {
        "encoder_wrong_mels": f"input 'mel' must have shape [1, {n_mels}, frames], got [1, {n_mels + 3}, 50]",
        "projector_wrong_dim": f"input 'encoded' must have shape [1, frames, {enc_dim}], got [1, 5, {enc_dim + 1}]",
    }
    return {c.id: (c, model_level.get(c.id, c.message)) for c in cases(m.model.vocab_rows, n_mels, enc_dim, max_frames)}


def _answer(s, model, inputs):
    if model not in s.models:  # the ensemble: its steps, in-process
        return s.pb.InferenceRequest(
            model_name=model,
            inputs=[Tensor(k, v) for k, v in inputs.items()],
            requested_output_names=[C.TRANSCRIPT.name],
        ).exec()
    request = s.pb.request(inputs)
    out = s[model].execute([request])
    return request.sender.final() if out is None else out[0]


@pytest.mark.parametrize("case_id", IDS)
def test_bad_input_matrix_in_process(served, matrix, case_id):
    case, message = matrix[case_id]
    code, text = error_of(_answer(served, case.model, case.inputs))
    assert code == case.status_grpc and message in text, (code, text)
