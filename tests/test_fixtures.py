"""The tiny checkpoints: real layout, deterministic, and outputs that follow the audio."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from canary_triton.fixtures.tiny import make_tiny_random

from .conftest import TRANSFORMERS_4_57_TOKENIZER_CLASSES, speechlike


def test_tiny_random_outputs_depend_on_the_audio(oracle_random):
    clips = [speechlike(s, seed=i) for i, s in enumerate([0.8, 1.7, 2.9, 4.2])]
    out = oracle_random.run(clips, max_new_tokens=8)
    seqs = [tuple(t) for t in out.token_ids]
    # A default-initialised tiny model emits one repeated token whatever the audio; this one not.
    assert len(set(seqs)) > 1, seqs
    assert len({tok for s in seqs for tok in s}) > 2, seqs
    last = torch.stack([logits[-1] for logits in out.prompt_logits])
    assert (last[0] - last[1]).abs().max().item() > 0.1
    assert (last.argmax(-1) != last[0].argmax()).any()


def test_tiny_random_is_deterministic(tiny_random_dir, tmp_path):
    again = make_tiny_random(tmp_path / "again", seed=1234)
    a = load_file(str(tiny_random_dir / "model.safetensors"))
    b = load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lora_is_not_a_no_op(oracle_random):
    # PEFT starts lora_B at zero; the fixture re-draws it so the adapter changes the output.
    m = oracle_random.model
    ids = torch.tensor([oracle_random.prompt_ids("one two three")])
    with torch.no_grad():
        on = m(m.embed_tokens(ids))["logits"]
        with m.llm.disable_adapter():
            off = m(m.embed_tokens(ids))["logits"]
    assert (on - off).abs().max().item() > 1e-2


def test_tiny_trained_is_small_enough_to_commit(tiny_trained_dir):
    size = sum(p.stat().st_size for p in tiny_trained_dir.rglob("*") if p.is_file())
    assert size <= 10 * 1024 * 1024


def test_the_fixture_tokenizer_names_a_class_transformers_4_57_has(tiny_random_dir):
    """build_tokenizer saved it under transformers 5's TokenizersBackend, unknown to 4.57.3."""
    import json

    name = json.loads((tiny_random_dir / "tokenizer_config.json").read_text())["tokenizer_class"]
    assert name == "PreTrainedTokenizerFast" and name in TRANSFORMERS_4_57_TOKENIZER_CLASSES
