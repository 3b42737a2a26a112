"""Checkpoint loading: the real file layout, strict weights, and clear errors naming the problem."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from canary_triton.checkpoint import inspect_checkpoint, load_salm
from canary_triton.errors import CheckpointError
from canary_triton.oracle import Oracle


@pytest.fixture()
def ckpt_copy(tiny_random_dir, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_random_dir, dst)
    return dst


def _edit_weights(ckpt, fn):
    tensors = load_file(str(ckpt / "model.safetensors"))
    fn(tensors)
    save_file(tensors, str(ckpt / "model.safetensors"))


def test_layout_is_the_real_checkpoints(tiny_random_dir):
    names = {p.name for p in tiny_random_dir.iterdir()}
    assert {"config.json", "model.safetensors"} <= names
    cfg = json.loads((tiny_random_dir / "config.json").read_text())
    assert cfg["model_type"] == "nemo_speechlm"  # written by NeMo's SALM.save_pretrained
    keys = load_file(str(tiny_random_dir / "model.safetensors")).keys()
    assert "embed_tokens.weight" in keys
    assert any(k.startswith("perception.encoder.layers.0.self_attn.linear_pos") for k in keys)
    assert any(k.endswith("q_proj.lora_A.default.weight") for k in keys)
    assert any(k.endswith("v_proj.base_layer.weight") for k in keys)
    assert all(k.startswith(("perception.", "llm.base_model.model.", "embed_tokens.")) for k in keys)


def test_load_salm_equals_nemo_from_pretrained(tiny_random_dir, oracle_random):
    model, info = load_salm(tiny_random_dir)
    ours, ref = model.state_dict(), oracle_random.model.state_dict()
    assert ours.keys() == ref.keys()
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k
    assert not model.training
    assert info.lora_scale == 3.0


def test_separate_qwen3_folder_as_for_the_real_checkpoint(tiny_random_dir, tmp_path, oracle_random):
    # HF layout of nvidia/canary-qwen-2.5b: only config.json + model.safetensors; the Qwen3
    # tokenizer and config come from another folder.
    ckpt, qwen = tmp_path / "canary", tmp_path / "qwen3"
    ckpt.mkdir()
    qwen.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(tiny_random_dir / f, ckpt / f)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_random_dir / f, qwen / f)
    shutil.copy(tiny_random_dir / "llm_backbone" / "config.json", qwen / "config.json")
    with pytest.raises(CheckpointError, match="--llm-dir"):
        inspect_checkpoint(ckpt)
    info = inspect_checkpoint(ckpt, llm_dir=qwen)
    assert info.paths.tokenizer_dir == qwen
    oracle = Oracle.from_checkpoint(ckpt, llm_dir=qwen)
    a, b = oracle.model.state_dict(), oracle_random.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_missing_tensor_is_named(ckpt_copy):
    key = "perception.encoder.layers.1.conv.depthwise_conv.weight"
    _edit_weights(ckpt_copy, lambda t: t.pop(key))
    with pytest.raises(CheckpointError, match=f"missing 1 tensor.*{key}"):
        load_salm(ckpt_copy)


def test_extra_tensor_is_named(ckpt_copy):
    _edit_weights(ckpt_copy, lambda t: t.__setitem__("perception.bogus.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match="does not have: perception.bogus.weight"):
        load_salm(ckpt_copy)


def test_wrong_shape_is_named(ckpt_copy):
    key = "perception.proj.weight"

    def shrink(t):
        t[key] = t[key][:, :-1].contiguous()

    _edit_weights(ckpt_copy, shrink)
    with pytest.raises(CheckpointError, match=r"wrong shape: perception.proj.weight \[64, 63\] \(expected \[64, 64\]\)"):
        load_salm(ckpt_copy)


def test_missing_lora_tensor_is_named(ckpt_copy):
    _edit_weights(ckpt_copy, lambda t: [t.pop(k) for k in list(t) if "layers.0.self_attn.v_proj.lora_B" in k])
    with pytest.raises(CheckpointError, match="v_proj.lora_B.default.weight"):
        load_salm(ckpt_copy)


def test_nonexistent_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist; expected a folder with config.json and model.safetensors"):
        inspect_checkpoint(tmp_path / "nope")


def test_missing_weights_file(ckpt_copy):
    (ckpt_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        inspect_checkpoint(ckpt_copy)


def test_config_that_is_not_salm(ckpt_copy):
    (ckpt_copy / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 64}))
    with pytest.raises(CheckpointError, match="is not a NeMo SALM config \\(missing perception, pretrained_llm"):
        inspect_checkpoint(ckpt_copy)


def test_config_that_is_not_json(ckpt_copy):
    (ckpt_copy / "config.json").write_text("perception: {}")
    with pytest.raises(CheckpointError, match="is not readable JSON"):
        inspect_checkpoint(ckpt_copy)


def test_corrupt_weights_file(ckpt_copy):
    (ckpt_copy / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_salm(ckpt_copy)


def test_missing_tokenizer(ckpt_copy):
    (ckpt_copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no Qwen3 tokenizer"):
        inspect_checkpoint(ckpt_copy)
