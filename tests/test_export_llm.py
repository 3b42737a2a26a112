"""LoRA merge: merged Qwen3 equals NeMo with the adapter, base Qwen3 equals NeMo with it disabled."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from canary_triton.checkpoint.reader import checkpoint_tokenizer, inspect_checkpoint
from canary_triton.checkpoint.tokenizer import load_tokenizer
from canary_triton.errors import CheckpointError
from canary_triton.export.lora import LoraSpec, export_llm

from .conftest import assert_portable_tokenizer_folder


@pytest.fixture(scope="module")
def llm_dirs(tiny_random_dir, tmp_path_factory):
    return export_llm(inspect_checkpoint(tiny_random_dir), tmp_path_factory.mktemp("llm"))


def _hf(path):
    from transformers import AutoModelForCausalLM  # lazy: transformers imports in seconds

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def _prompt_embeds(oracle, ids):
    m = oracle.model
    return m.embed_tokens(torch.tensor([ids]))


def test_scale_is_read_from_the_checkpoint(tiny_random_dir, tiny_trained_dir):
    assert LoraSpec.from_info(inspect_checkpoint(tiny_random_dir)).scale == 3.0
    assert LoraSpec.from_info(inspect_checkpoint(tiny_trained_dir)).scale == 2.0


def test_merged_weights_are_w_plus_scale_ba(tiny_random_dir, llm_dirs):
    src = load_file(str(tiny_random_dir / "model.safetensors"))
    merged = load_file(str(llm_dirs[0] / "model.safetensors"))
    base = load_file(str(llm_dirs[1] / "model.safetensors"))
    stem = "llm.base_model.model.model.layers.1.self_attn.q_proj"
    w, a, b = (
        src[stem + ".base_layer.weight"],
        src[stem + ".lora_A.default.weight"],
        src[stem + ".lora_B.default.weight"],
    )
    key = "model.layers.1.self_attn.q_proj.weight"
    assert torch.allclose(merged[key], w + 3.0 * b @ a, atol=1e-6)
    assert torch.equal(base[key], w)
    assert torch.equal(merged["model.embed_tokens.weight"], src["embed_tokens.weight"])
    assert "lm_head.weight" not in merged  # tied, as in Qwen3-1.7B
    assert not any("lora" in k for k in merged)


@pytest.mark.parametrize("text", ["one two three", "turn on the light please"])
def test_merged_logits_equal_nemo_with_adapter(oracle_random, llm_dirs, text):
    ids = oracle_random.prompt_ids(text)
    with torch.no_grad():
        ref = oracle_random.model(_prompt_embeds(oracle_random, ids))["logits"]
        ours = _hf(llm_dirs[0])(input_ids=torch.tensor([ids])).logits
    assert (ours - ref).abs().max().item() <= 1e-4


def test_base_logits_equal_nemo_with_adapter_disabled(oracle_random, llm_dirs):
    ids = oracle_random.prompt_ids("summarize: five six seven")
    with torch.no_grad(), oracle_random.model.llm.disable_adapter():
        ref = oracle_random.model(_prompt_embeds(oracle_random, ids))["logits"]
    with torch.no_grad():
        ours = _hf(llm_dirs[1])(input_ids=torch.tensor([ids])).logits
    assert (ours - ref).abs().max().item() <= 1e-4


def test_llm_mode_greedy_ids_equal_nemo(oracle_random, llm_dirs):
    texts = ["what is two plus two", "good morning"]
    ref = oracle_random.llm_generate(texts, max_new_tokens=8)
    tok = checkpoint_tokenizer(oracle_random.info)
    lm = _hf(llm_dirs[1])
    for text, want in zip(texts, ref):
        ids = torch.tensor([tok.llm_prompt_ids(text)])
        out = lm.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=8,
            do_sample=False,
            eos_token_id=tok.ids.eos,
            pad_token_id=tok.ids.pad,
        )[0, ids.shape[1] :].tolist()
        if tok.ids.eos in out:
            out = out[: out.index(tok.ids.eos)]
        assert out == want


def test_exported_tokenizer_holds_the_placeholder(llm_dirs, oracle_random):
    tok = load_tokenizer(llm_dirs[0], require_placeholder=True)
    assert tok.ids == oracle_random.special_ids
    cfg = json.loads((llm_dirs[0] / "config.json").read_text())
    assert cfg["model_type"] == "qwen3" and cfg["tie_word_embeddings"] is True


def test_dora_is_refused(tiny_random_dir, tmp_path):
    ckpt = tmp_path / "c"
    shutil.copytree(tiny_random_dir, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["lora"]["use_dora"] = True
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="use_dora"):
        LoraSpec.from_info(inspect_checkpoint(ckpt))


def test_exported_tokenizer_folders_load_under_transformers_4_57(tiny_trained_dir, tmp_path):
    """llm_merged/ and llm_base/ feed the tensorrtllm backend's tokenizer_dir, the postprocessor and
    the first GPU run's oracle under transformers 4.57.3: from a checkpoint whose tokenizer says
    TokenizersBackend (as transformers 5 writes it), both come out under a class 4.57.3 has."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_trained_dir, ckpt)
    cfg = json.loads((ckpt / "tokenizer_config.json").read_text())
    (ckpt / "tokenizer_config.json").write_text(json.dumps({**cfg, "tokenizer_class": "TokenizersBackend"}))
    info = inspect_checkpoint(ckpt)
    want = checkpoint_tokenizer(info)
    for folder in export_llm(info, tmp_path / "out"):
        assert assert_portable_tokenizer_folder(folder, want.hf) == "PreTrainedTokenizerFast"
        assert load_tokenizer(folder, require_placeholder=True, raw=True).ids == want.ids
