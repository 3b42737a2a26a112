"""The `postprocessor` model in-process (fake pb_utils)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.triton_models.postprocessor import PostprocessorModel

from .fake_pb_utils import error_of, load_model


@pytest.fixture(scope="module")
def post(exported_trained):
    return load_model(PostprocessorModel, exported_trained / "model_repository", C.POSTPROCESSOR_MODEL)


def _request(m, ids, length):
    return m.pb.request(
        {C.OUTPUT_IDS.name: np.array([[ids]], np.int32), C.SEQUENCE_LENGTH.name: np.array([[length]], np.int32)}
    )


def test_decodes_each_request_up_to_its_length_with_nemo_rules(post):
    ids = post.tokenizer.encode("hello world")
    eos = post.tokenizer.ids.eos
    out = post.execute(
        [_request(post, ids + [eos, 9], len(ids) + 2), _request(post, ids, 1), _request(post, [post.vocab_rows], 1)]
    )
    texts = [r.outputs()[C.TRANSCRIPT.name] for r in out[:2]]
    assert all(t.dtype == np.object_ and t.shape == (1, 1) for t in texts)
    assert texts[0][0, 0].decode("utf-8") == post.tokenizer.decode(ids + [eos, 9])
    assert texts[1][0, 0].decode("utf-8") == post.tokenizer.decode(ids[:1])
    code, message = error_of(out[2])
    assert code == "INVALID_ARG" and f"outside 0..{post.vocab_rows - 1}" in message


def test_a_decode_failure_fails_only_its_request(post, monkeypatch):
    real = post.tokenizer.decode

    def decode(ids):
        if ids == [7]:
            raise RuntimeError("bad")
        return real(ids)

    monkeypatch.setattr(post, "tokenizer", SimpleNamespace(decode=decode))  # the real one is frozen
    out = post.execute([_request(post, [7], 1), _request(post, [5], 1)])
    assert error_of(out[0]) == ("INTERNAL", "bad")
    assert out[1].outputs()[C.TRANSCRIPT.name][0, 0].decode("utf-8") == real([5])
