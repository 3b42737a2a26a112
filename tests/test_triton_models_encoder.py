"""The `encoder` model in-process (fake pb_utils): batching, per-request errors, the log line."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.triton_models.encoder import EncoderModel

from .fake_pb_utils import error_of, load_model


@pytest.fixture(scope="module")
def encoder(exported_trained):
    return load_model(EncoderModel, exported_trained / "model_repository", C.ENCODER_MODEL)


def _mel(n_mels, frames, seed):
    return np.random.default_rng(seed).standard_normal((1, n_mels, frames)).astype(np.float32)


def _request(m, mel, length):
    return m.pb.request({C.MEL.name: mel, C.MEL_LENGTH.name: np.array([[length]], np.int64)})


def test_initialize_logs_runtime_and_threads(encoder):
    assert ("info", "encoder: ONNX Runtime fp32, 1 thread(s)") in encoder.pb.Logger.lines
    assert encoder.max_frames > 1 and encoder.n_mels > 0


def test_batch_of_different_lengths_matches_each_alone_and_a_bad_request_fails_alone(encoder):
    n = encoder.n_mels
    mels = [_mel(n, 40, 1), _mel(n, 97, 2)]
    bad = _request(encoder, mels[0], 41)  # length beyond the mel's frames
    batch = encoder.execute([_request(encoder, mels[0], 40), bad, _request(encoder, mels[1], 90)])
    assert len(batch) == 3
    assert error_of(batch[1]) == (
        "INVALID_ARG",
        f"input '{C.MEL_LENGTH.name}' must be one value in 1..40 (the mel's frames), got [41]",
    )
    for response, (mel, length) in zip((batch[0], batch[2]), ((mels[0], 40), (mels[1], 90))):
        alone = encoder.execute([_request(encoder, mel, length)])[0].outputs()
        got = response.outputs()
        assert set(got) == {C.ENCODED.name, C.ENCODED_LENGTH.name}
        n_out = int(got[C.ENCODED_LENGTH.name].reshape(-1)[0])
        assert got[C.ENCODED_LENGTH.name].shape == (1, 1) and got[C.ENCODED_LENGTH.name].dtype == np.int64
        assert got[C.ENCODED.name].shape[:2] == (1, n_out) and got[C.ENCODED.name].flags["C_CONTIGUOUS"]
        assert np.array_equal(got[C.ENCODED_LENGTH.name], alone[C.ENCODED_LENGTH.name])
        np.testing.assert_allclose(got[C.ENCODED.name], alone[C.ENCODED.name], atol=1e-4)


def test_all_bad_requests_get_their_own_errors_without_running(encoder, monkeypatch):
    monkeypatch.setattr(encoder.runner, "encode", lambda *a: pytest.fail("the runner ran on no valid request"))
    out = encoder.execute(
        [
            encoder.pb.request({C.MEL_LENGTH.name: np.array([[3]], np.int64)}),
            _request(encoder, np.full((1, encoder.n_mels, 5), np.nan, np.float32), 5),
        ]
    )
    assert error_of(out[0]) == ("INVALID_ARG", f"input '{C.MEL.name}' is required")
    assert error_of(out[1])[0] == "INVALID_ARG" and "contains NaN or Inf" in error_of(out[1])[1]


def test_a_runtime_failure_fails_each_valid_request_as_internal(encoder, monkeypatch):
    def broken(*_):
        raise RuntimeError("onnxruntime fell over")

    monkeypatch.setattr(encoder.runner, "encode", broken)
    out = encoder.execute(
        [_request(encoder, _mel(encoder.n_mels, 20, 3), 20), _request(encoder, _mel(encoder.n_mels, 20, 4), 0)]
    )
    assert error_of(out[0]) == ("INTERNAL", "onnxruntime fell over")
    assert error_of(out[1])[0] == "INVALID_ARG"
