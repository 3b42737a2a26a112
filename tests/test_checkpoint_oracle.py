"""The NeMo oracle: consistent intermediates, batch invariance, and a model that really transcribes."""

from __future__ import annotations

from canary_triton import contract as C
from canary_triton.checkpoint.reader import checkpoint_tokenizer
from canary_triton.evaluation.wer import wer

from .conftest import speechlike


def test_intermediates_have_the_contract_shapes(oracle_random):
    info = oracle_random.info
    clips = [speechlike(s, seed=i) for i, s in enumerate([0.5, 3.3])]
    out = oracle_random.run(clips, max_new_tokens=4)
    prompt = checkpoint_tokenizer(info).asr_prompt_ids()
    for i, clip in enumerate(clips):
        frames = info.num_audio_frames(len(clip))
        assert int(out.encoded_lengths[i]) == frames
        assert int(out.mel_lengths[i]) == C.num_mel_frames(len(clip), info.mel)
        assert out.prompt_logits[i].shape == (len(prompt) - 1 + frames, info.vocab_rows)
    assert out.mel.shape[1] == info.mel.n_mels
    assert out.encoded.shape[-1] == info.encoder_dim
    assert out.projected.shape[-1] == info.llm_hidden


def test_a_clip_does_not_depend_on_its_batch(oracle_random):
    a, b = speechlike(1.3, seed=7), speechlike(6.1, seed=8)
    both = oracle_random.run([a, b], max_new_tokens=6)
    alone = oracle_random.run([a], max_new_tokens=6)
    n = int(alone.encoded_lengths[0])
    assert (both.projected[0, :n] - alone.projected[0, :n]).abs().max().item() <= 1e-4
    assert (both.prompt_logits[0] - alone.prompt_logits[0]).abs().max().item() <= 1e-4
    assert both.token_ids[0] == alone.token_ids[0]


def test_tiny_trained_transcribes_heldout_clips(oracle_trained, heldout):
    audios = [a for a, _ in heldout]
    refs = [t for _, t in heldout]
    hyps = oracle_trained.transcribe(audios)
    score = wer(refs, hyps)
    print(f"tiny-trained held-out WER {100 * score:.1f}% over {len(refs)} clips")
    assert len(refs) >= 30
    assert score <= 0.10, list(zip(refs, hyps))


def test_greedy_ids_decode_to_the_same_text(oracle_trained, heldout):
    tok = checkpoint_tokenizer(oracle_trained.info)
    clips = [a for a, _ in heldout[:4]]
    out = oracle_trained.run(clips, max_new_tokens=32)
    assert out.texts == [tok.decode(ids) for ids in out.token_ids]
    assert out.texts == oracle_trained.transcribe(clips)
