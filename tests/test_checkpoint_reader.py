"""Checkpoint loading: the real file layout, strict weights, and clear errors naming the problem."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import load_file, save_file

from canary_triton.checkpoint.oracle import Oracle
from canary_triton.checkpoint.reader import inspect_checkpoint, load_salm, read_safetensors_into
from canary_triton.errors import CheckpointError


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
    with pytest.raises(
        CheckpointError, match=r"wrong shape: perception.proj.weight \[64, 63\] \(expected \[64, 64\]\)"
    ):
        load_salm(ckpt_copy)


def test_missing_lora_tensor_is_named(ckpt_copy):
    _edit_weights(ckpt_copy, lambda t: [t.pop(k) for k in list(t) if "layers.0.self_attn.v_proj.lora_B" in k])
    with pytest.raises(CheckpointError, match="v_proj.lora_B.default.weight"):
        load_salm(ckpt_copy)


def test_nonexistent_path(tmp_path):
    with pytest.raises(
        CheckpointError, match="does not exist; expected a folder with config.json and model.safetensors"
    ):
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


# -- where the Qwen3 is found (the order NeMo's SALM.from_pretrained uses, offline) -----------------


def _qwen3_folder(src, dst):
    """A plain Qwen3 folder (config.json + tokenizer) made from a fixture's offline companions."""
    dst.mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, dst / f)
    shutil.copy(src / "llm_backbone" / "config.json", dst / "config.json")
    return dst


def _bare_checkpoint(src, dst, **config_changes):
    """Only config.json + model.safetensors, as the hub holds nvidia/canary-qwen-2.5b."""
    dst.mkdir(parents=True)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(config_changes)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    return dst


def hub_cache_with(cache, repo_id, files):
    """A Hugging Face cache laid out as huggingface_hub writes it: content-addressed blobs,
    refs/main holding the commit, snapshots/<commit>/<file> as relative symlinks to the blobs."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        data = src.read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        os.symlink(f"../../blobs/{blob}", snap / name)
    return snap


def _cache_files(ckpt):
    return {
        "config.json": ckpt / "llm_backbone" / "config.json",
        "tokenizer.json": ckpt / "tokenizer.json",
        "tokenizer_config.json": ckpt / "tokenizer_config.json",
    }


def test_pretrained_llm_as_an_absolute_folder(tiny_random_dir, tmp_path, oracle_random):
    qwen = _qwen3_folder(tiny_random_dir, tmp_path / "models" / "qwen3")
    ckpt = _bare_checkpoint(tiny_random_dir, tmp_path / "canary", pretrained_llm=str(qwen))
    info = inspect_checkpoint(ckpt)
    assert info.paths.tokenizer_dir == qwen and info.paths.llm_config_dir == qwen
    oracle = Oracle.from_checkpoint(ckpt)
    a, b = oracle.model.state_dict(), oracle_random.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_pretrained_llm_relative_to_the_checkpoint(tiny_random_dir, tmp_path, monkeypatch):
    qwen = _qwen3_folder(tiny_random_dir, tmp_path / "models" / "qwen3")
    ckpt = _bare_checkpoint(tiny_random_dir, tmp_path / "models" / "canary", pretrained_llm="../qwen3")
    monkeypatch.chdir(tmp_path)  # relative to the checkpoint, not to the working directory
    info = inspect_checkpoint(ckpt)
    assert info.paths.llm_config_dir.resolve() == qwen.resolve()
    assert info.paths.tokenizer_dir.resolve() == qwen.resolve()


def test_tokenizer_path_is_read_as_nemo_reads_it(tiny_random_dir, tmp_path):
    qwen = _qwen3_folder(tiny_random_dir, tmp_path / "qwen3")
    tok = tmp_path / "tok"
    tok.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.move(qwen / f, tok / f)
    ckpt = _bare_checkpoint(tiny_random_dir, tmp_path / "canary", pretrained_llm=str(qwen), tokenizer_path=str(tok))
    info = inspect_checkpoint(ckpt)
    assert info.paths.tokenizer_dir == tok and info.paths.llm_config_dir == qwen


def test_hub_id_found_in_the_local_hugging_face_cache(tiny_random_dir, tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    repo_id = json.loads((tiny_random_dir / "config.json").read_text())["pretrained_llm"]
    snap = hub_cache_with(cache, repo_id, _cache_files(tiny_random_dir))
    ckpt = _bare_checkpoint(tiny_random_dir, tmp_path / "canary")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    info = inspect_checkpoint(ckpt)
    assert info.paths.llm_config_dir == snap and info.paths.tokenizer_dir == snap
    assert info.llm_hidden == json.loads((tiny_random_dir / "llm_backbone" / "config.json").read_text())["hidden_size"]


def test_order_llm_dir_then_beside_then_pretrained_llm(tiny_random_dir, tmp_path):
    named = _qwen3_folder(tiny_random_dir, tmp_path / "named")
    given = _qwen3_folder(tiny_random_dir, tmp_path / "given")
    ckpt = tmp_path / "canary"
    shutil.copytree(tiny_random_dir, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["pretrained_llm"] = str(named)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    beside = inspect_checkpoint(ckpt).paths
    assert beside.tokenizer_dir == ckpt and beside.llm_config_dir == ckpt / "llm_backbone"
    assert inspect_checkpoint(ckpt, llm_dir=given).paths.llm_config_dir == given
    shutil.rmtree(ckpt / "llm_backbone")
    assert inspect_checkpoint(ckpt).paths.llm_config_dir == named
    assert inspect_checkpoint(ckpt).paths.tokenizer_dir == ckpt  # the root's tokenizer still comes first


def test_qwen3_found_nowhere_names_every_place_tried(tiny_random_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    ckpt = _bare_checkpoint(tiny_random_dir, tmp_path / "canary", pretrained_llm="Qwen/Qwen3-1.7B")
    with pytest.raises(CheckpointError) as e:
        inspect_checkpoint(ckpt)
    msg = str(e.value)
    assert "\n" not in msg and "--llm-dir" in msg
    for place in (
        str(ckpt),
        str(ckpt / "llm_backbone"),
        str(ckpt / "Qwen" / "Qwen3-1.7B"),
        "'Qwen/Qwen3-1.7B'",
        str(tmp_path / "empty-cache"),
    ):
        assert place in msg, place
    with pytest.raises(CheckpointError, match="does not exist"):
        inspect_checkpoint(ckpt, llm_dir=tmp_path / "nope")


def test_read_safetensors_into_fills_tensors_in_place(tmp_path):
    g = torch.Generator().manual_seed(0)
    stored = {
        "a": torch.randn(3, 5, generator=g),
        "b": torch.randn(7, generator=g).to(torch.bfloat16),
        "c": torch.arange(4, dtype=torch.int64),
        "s": torch.tensor(2.5),
    }
    path = tmp_path / "w.safetensors"
    save_file(stored, str(path))
    same = {k: torch.empty_like(v) for k, v in stored.items()}
    ptrs = {k: v.data_ptr() for k, v in same.items()}
    read_safetensors_into(path, {k: (k, v) for k, v in same.items()})
    assert all(torch.equal(same[k], stored[k]) for k in stored)
    assert {k: v.data_ptr() for k, v in same.items()} == ptrs  # written in place
    # Another dtype (the model's fp32 from a bf16 file): converted; a tied label reads another name.
    conv = {"b32": ("b", torch.empty(7)), "tied": ("a", torch.empty(3, 5))}
    read_safetensors_into(path, conv)
    assert torch.equal(conv["b32"][1], stored["b"].float()) and torch.equal(conv["tied"][1], stored["a"])


def test_read_safetensors_into_names_a_wrong_shape_and_a_truncated_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(64, 64)}, str(path))
    with pytest.raises(CheckpointError, match=r"a has shape \(64, 64\), the model's x \(2, 2\)"):
        read_safetensors_into(path, {"x": ("a", torch.empty(2, 2))})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="ends inside tensor a: the file is truncated"):
        read_safetensors_into(path, {"a": ("a", torch.empty(64, 64))})
