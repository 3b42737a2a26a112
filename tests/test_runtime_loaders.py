"""canary_triton/runtime/loaders.py: reading an export's artifacts for the served models."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from canary_triton import contract as C
from canary_triton.artifacts import ADAPTER_FILE, ExportManifest
from canary_triton.errors import CheckpointError
from canary_triton.runtime.loaders import (
    export_mel_params,
    llm_dtype,
    load_lora,
    load_onnx,
    load_preprocessor,
    load_serving_tokenizer,
)

from .sample_export import sample_manifest, write_sample_export


# -- export.json (canary_triton/artifacts.py: tests/test_artifacts.py) -------------------------
def test_manifest_fields(tmp_path):
    mel = C.MelParams(n_mels=80, hop_length=100)
    m = sample_manifest(mel=mel)
    replace(m, options=replace(m.options, llm_dtype="bfloat16")).write(tmp_path)
    assert export_mel_params(tmp_path) == mel
    assert llm_dtype(tmp_path) is torch.bfloat16


def test_a_missing_onnx_file_is_named(tmp_path):
    write_sample_export(tmp_path)
    with pytest.raises(CheckpointError, match=r"onnx/encoder\.onnx is missing"):
        load_onnx(tmp_path, "encoder")


# -- the ASR adapter -------------------------------------------------------------------------
def test_no_adapter_file_means_no_lora(tmp_path):
    write_sample_export(tmp_path)
    (tmp_path / "llm_base").mkdir()
    assert load_lora(tmp_path) is None


def test_the_adapter_is_read_per_layer_and_projection_in_the_export_dtype(tmp_path):
    write_sample_export(tmp_path)
    (tmp_path / "llm_base").mkdir()
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in (0, 3):
        for proj in ("q_proj", "v_proj"):
            stem = f"model.layers.{layer}.self_attn.{proj}"
            tensors[stem + ".lora_A"] = torch.randn(2, 6, generator=g).to(torch.bfloat16)
            tensors[stem + ".lora_B"] = torch.randn(5, 2, generator=g).to(torch.bfloat16)
    tensors["model.layers.0.mlp.down_proj.weight"] = torch.zeros(3)  # not an adapter tensor: ignored
    save_file(tensors, str(tmp_path / "llm_base" / ADAPTER_FILE), metadata={"format": "pt", "scale": "2.5", "r": "2"})

    lora = load_lora(tmp_path)
    assert lora.scale == 2.5 and sorted(lora.layers) == [0, 3]
    for layer in (0, 3):
        assert sorted(lora.layers[layer]) == ["q_proj", "v_proj"]
        for proj, (a, b) in lora.layers[layer].items():
            stem = f"model.layers.{layer}.self_attn.{proj}"
            assert a.dtype == b.dtype == torch.float32  # the export's dtype
            assert torch.equal(a, tensors[stem + ".lora_A"].float()) and torch.equal(
                b, tensors[stem + ".lora_B"].float()
            )
    assert load_lora(tmp_path, dtype=torch.bfloat16).layers[3]["v_proj"][0].dtype == torch.bfloat16


# -- loaders over a real export (the tiny-trained one the served tests use) -------------------
def test_the_served_tokenizer_and_preprocessor_are_the_exports(exported_trained):
    manifest = ExportManifest.read(exported_trained)
    tok = load_serving_tokenizer(exported_trained)
    assert tok.ids == manifest.special_ids
    assert tuple(tok.asr_prompt_ids()) == manifest.asr_prompt_ids

    pre, ids = load_preprocessor(exported_trained)
    assert ids == tok.ids and tuple(pre.prompt) == manifest.asr_prompt_ids and pre.placeholder == ids.audio_placeholder
    assert pre.vocab_rows == manifest.model.vocab_rows and pre.bucket_columns == 1
    assert pre.subsampling.factor == manifest.model.subsampling_factor
    assert pre.front_end.params == export_mel_params(exported_trained)
    bucketed, _ = load_preprocessor(exported_trained, bucket_seconds=2.0)
    assert bucketed.bucket_columns == C.mel_bucket_columns(2.0, pre.front_end.params)


def test_the_exported_adapter_has_the_checkpoints_scale(exported_trained):
    manifest = ExportManifest.read(exported_trained)
    lora = load_lora(exported_trained)
    assert lora.scale == manifest.model.lora_scale and lora.layers
    a, b = next(iter(next(iter(lora.layers.values())).values()))
    assert a.shape[0] == b.shape[1] == manifest.model.lora_r
