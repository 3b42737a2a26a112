"""The `projector` model in-process (fake pb_utils): batching, per-request errors."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.triton_models.projector import ProjectorModel

from .fake_pb_utils import error_of, load_model


@pytest.fixture(scope="module")
def projector(exported_trained):
    return load_model(ProjectorModel, exported_trained / "model_repository", C.PROJECTOR_MODEL)


def _request(m, frames, seed, dim=None):
    x = np.random.default_rng(seed).standard_normal((1, frames, dim or m.dim)).astype(np.float32)
    return m.pb.request({C.ENCODED.name: x}), x


def test_batch_of_different_lengths_matches_each_alone(projector):
    (a, xa), (b, xb) = _request(projector, 7, 1), _request(projector, 19, 2)
    bad, _ = _request(projector, 5, 3, dim=projector.dim + 1)
    out = projector.execute([a, bad, b])
    assert error_of(out[1]) == (
        "INVALID_ARG",
        f"input '{C.ENCODED.name}' must have shape [1, frames, {projector.dim}], got [1, 5, {projector.dim + 1}]",
    )
    for response, x in ((out[0], xa), (out[2], xb)):
        got = response.outputs()
        alone = projector.runner.project(x)
        assert got[C.PROMPT_VOCAB_SIZE.name].tolist() == [[x.shape[1]]]
        assert got[C.PROMPT_VOCAB_SIZE.name].dtype == np.int32
        assert got[C.PROMPT_EMBEDDING_TABLE.name].shape == alone.shape
        np.testing.assert_allclose(got[C.PROMPT_EMBEDDING_TABLE.name], alone, atol=1e-5)


def test_too_many_frames_and_a_runtime_failure(projector, monkeypatch):
    long, _ = _request(projector, projector.max_frames + 1, 4)
    ok, _ = _request(projector, 3, 5)
    out = projector.execute([long])
    assert error_of(out[0]) == (
        "INVALID_ARG",
        f"input '{C.ENCODED.name}' has {projector.max_frames + 1} frames; the limit is 1..{projector.max_frames}",
    )

    def broken(_):
        raise MemoryError("no room")

    monkeypatch.setattr(projector.runner, "project", broken)
    assert error_of(projector.execute([ok])[0]) == ("INTERNAL", "no room")
