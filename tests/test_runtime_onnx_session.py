"""canary_triton/runtime/onnx_session.py: the CPU serving path's ONNX Runtime sessions, on two small
graphs written here with the contract's tensor names (the exported encoder and projector against
NeMo are in test_export_onnx.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from canary_triton import contract as C
from canary_triton.runtime.onnx_session import (
    ONNX_IN_MEL,
    ONNX_IN_MEL_LENGTH,
    ONNX_OUT_ENCODED,
    ONNX_OUT_ENCODED_LENGTH,
    ONNX_OUT_TABLE,
    OnnxEncoderProjector,
)

N_MELS, D_ENC, HIDDEN = 8, 8, 5
W = np.random.default_rng(0).standard_normal((D_ENC, HIDDEN)).astype(np.float32)


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """encoder: mel [B, n_mels, T] -> encoded = mel^T [B, T, n_mels], encoded_length = mel_length;
    projector: encoded [B, T, d] -> encoded @ W [B, T, hidden]."""
    folder = tmp_path_factory.mktemp("onnx-session")
    encoder = helper.make_graph(
        [
            helper.make_node("Transpose", [ONNX_IN_MEL], [ONNX_OUT_ENCODED], perm=[0, 2, 1]),
            helper.make_node("Identity", [ONNX_IN_MEL_LENGTH], [ONNX_OUT_ENCODED_LENGTH]),
        ],
        "encoder",
        [
            helper.make_tensor_value_info(ONNX_IN_MEL, TensorProto.FLOAT, ["B", N_MELS, "T"]),
            helper.make_tensor_value_info(ONNX_IN_MEL_LENGTH, TensorProto.INT64, ["B"]),
        ],
        [
            helper.make_tensor_value_info(ONNX_OUT_ENCODED, TensorProto.FLOAT, ["B", "T", N_MELS]),
            helper.make_tensor_value_info(ONNX_OUT_ENCODED_LENGTH, TensorProto.INT64, ["B"]),
        ],
    )
    projector = helper.make_graph(
        [helper.make_node("MatMul", [ONNX_OUT_ENCODED, "W"], [ONNX_OUT_TABLE])],
        "projector",
        [helper.make_tensor_value_info(ONNX_OUT_ENCODED, TensorProto.FLOAT, ["B", "T", D_ENC])],
        [helper.make_tensor_value_info(ONNX_OUT_TABLE, TensorProto.FLOAT, ["B", "T", HIDDEN])],
        initializer=[numpy_helper.from_array(W, "W")],
    )
    return _save(encoder, folder / "encoder.onnx"), _save(projector, folder / "projector.onnx")


def test_the_graphs_tensor_names_are_the_contracts():
    assert (ONNX_IN_MEL, ONNX_IN_MEL_LENGTH) == (C.MEL.name, C.MEL_LENGTH.name)
    assert (ONNX_OUT_ENCODED, ONNX_OUT_ENCODED_LENGTH) == (C.ENCODED.name, C.ENCODED_LENGTH.name)
    assert ONNX_OUT_TABLE == C.PROMPT_EMBEDDING_TABLE.name


def test_encode_then_project_run_the_graphs(graphs):
    runner = OnnxEncoderProjector(*graphs)
    mel = np.random.default_rng(1).standard_normal((2, N_MELS, 11)).astype(np.float32)
    lengths = np.array([11, 6], np.int64)
    encoded, n = runner.encode(mel, lengths)
    assert np.array_equal(encoded, mel.transpose(0, 2, 1)) and n.tolist() == [11, 6] and n.dtype == np.int64
    table = runner.project(encoded)
    assert table.shape == (2, 11, HIDDEN) and table.dtype == np.float32
    np.testing.assert_allclose(table, encoded @ W, rtol=1e-5, atol=1e-6)


def test_either_session_may_be_left_out(graphs):
    enc_only, proj_only = OnnxEncoderProjector(graphs[0], None), OnnxEncoderProjector(None, graphs[1])
    assert enc_only.projector is None and enc_only.encoder is not None
    assert proj_only.encoder is None and proj_only.projector is not None
    x = np.ones((1, 3, D_ENC), np.float32)
    np.testing.assert_allclose(proj_only.project(x), x @ W, rtol=1e-5, atol=1e-6)
    with pytest.raises(AttributeError):
        proj_only.encode(np.ones((1, N_MELS, 3), np.float32), np.array([3], np.int64))


@pytest.mark.parametrize("threads", [1, 2])
def test_sessions_use_the_given_threads_sleep_when_idle_and_keep_no_arena(graphs, threads):
    runner = OnnxEncoderProjector(*graphs, threads=threads)
    for session in (runner.encoder, runner.projector):
        opts = session.get_session_options()
        assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (threads, 1)
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert opts.enable_cpu_mem_arena is False
        assert session.get_providers() == ["CPUExecutionProvider"]


def test_a_missing_graph_fails_naming_it(tmp_path):
    with pytest.raises(Exception, match="nothing.onnx"):
        OnnxEncoderProjector(tmp_path / "nothing.onnx", None)
