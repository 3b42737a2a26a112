"""Encoder and projector ONNX against NeMo, padded batches included."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from canary_triton.checkpoint.reader import load_salm
from canary_triton.export.onnx_encoder import ENCODER_DATA, ENCODER_ONNX, consolidate_external_data, export_onnx
from canary_triton.runtime.onnx_session import OnnxEncoderProjector

from .conftest import speechlike


@pytest.fixture(scope="module")
def onnx_export(tiny_random_dir, tmp_path_factory):
    model, _ = load_salm(tiny_random_dir)
    return export_onnx(model, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def onnx_runner(onnx_export):
    return OnnxEncoderProjector(onnx_export.encoder, onnx_export.projector)


def test_loose_external_data_becomes_one_file_that_onnx_runtime_reads(onnx_export, onnx_runner, tmp_path):
    """What the exporter writes for a graph over 2 GB (one file per tensor, as the full-size
    encoder's 489), rewritten as encoder.onnx + encoder.onnx.data; outputs unchanged."""
    assert consolidate_external_data(onnx_export.encoder, ENCODER_DATA) is None  # small: self-contained
    loose = tmp_path / ENCODER_ONNX
    onnx.save_model(
        onnx.load(str(onnx_export.encoder)),
        str(loose),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
    )
    assert len(list(tmp_path.iterdir())) > 10
    assert consolidate_external_data(loose, ENCODER_DATA) == tmp_path / ENCODER_DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == [ENCODER_ONNX, ENCODER_DATA]
    n_mels = onnx_runner.encoder.get_inputs()[0].shape[1]
    mel = np.random.default_rng(0).standard_normal((2, n_mels, 250)).astype(np.float32)
    lengths = np.array([250, 180], np.int64)
    want = onnx_runner.encode(mel, lengths)
    got = OnnxEncoderProjector(loose, None).encode(mel, lengths)
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])


def test_onnx_equals_nemo_on_a_padded_batch(onnx_runner, oracle_random):
    clips = [speechlike(s, seed=i) for i, s in enumerate([0.1, 2.37, 40.0])]
    ref = oracle_random.run(clips, max_new_tokens=1)
    enc, enc_len = onnx_runner.encode(ref.mel.numpy(), ref.mel_lengths.numpy())
    assert enc_len.tolist() == ref.encoded_lengths.tolist()
    table = onnx_runner.project(enc)
    for i, n in enumerate(enc_len.tolist()):
        assert np.abs(enc[i, :n] - ref.encoded[i, :n].numpy()).max() <= 1e-4
        assert np.abs(table[i, :n] - ref.projected[i, :n].numpy()).max() <= 1e-4


def test_onnx_result_does_not_depend_on_the_batch(onnx_runner, oracle_random):
    a, b = speechlike(1.1, seed=3), speechlike(9.9, seed=4)
    both = oracle_random.run([a, b], max_new_tokens=1)
    alone = oracle_random.run([a], max_new_tokens=1)
    enc_both, len_both = onnx_runner.encode(both.mel.numpy(), both.mel_lengths.numpy())
    enc_alone, len_alone = onnx_runner.encode(alone.mel.numpy(), alone.mel_lengths.numpy())
    n = int(len_alone[0])
    assert int(len_both[0]) == n
    assert np.abs(enc_both[0, :n] - enc_alone[0, :n]).max() <= 1e-4


def test_gpu_projector_emits_a_bf16_table(tiny_random_dir, tmp_path):
    model, _ = load_salm(tiny_random_dir)
    export_onnx(model, tmp_path, bf16_table=True)
    graph = onnx.load(str(tmp_path / "projector_bf16.onnx")).graph
    assert graph.output[0].name == "prompt_embedding_table"
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
