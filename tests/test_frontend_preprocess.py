"""canary_triton/frontend/preprocess.py: request validation (each refusal names the input and the limit),
the ASR prompt with one fake id per audio frame, and the batched, bucket-padded mel features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canary_triton import contract as C
from canary_triton.errors import InputError
from canary_triton.frontend.features import MelFrontEnd
from canary_triton.frontend.preprocess import (
    AudioLimits,
    Preprocessor,
    asr_output_limit,
    audio_prompt_ids,
    decode_text,
    llm_mode_prompt,
    validate_audio,
    validate_max_new_tokens,
)

from .conftest import SR, speechlike

MEL = C.MelParams(n_mels=8)  # the real STFT sizes; few mel bins keep it cheap
LIMITS = AudioLimits.for_mel(MEL)
PLACEHOLDER, VOCAB_ROWS = 99, 1000
PROMPT = [1, 2, PLACEHOLDER, 3]


@pytest.fixture(scope="module")
def front_end() -> MelFrontEnd:
    g = torch.Generator().manual_seed(0)
    fb = torch.rand(MEL.n_mels, MEL.n_freqs, generator=g)
    return MelFrontEnd.from_tensors(MEL, fb, torch.hann_window(MEL.win_length))


# -- audio -----------------------------------------------------------------------------------
def test_limits_follow_the_mel_parameters():
    assert LIMITS.sample_rate == SR and LIMITS.max_samples == int(C.MAX_AUDIO_SECONDS * SR)
    assert LIMITS.min_samples == max(MEL.hop_length, int(C.MIN_AUDIO_SECONDS * SR))
    assert AudioLimits.for_mel(MEL, max_seconds=2.5).max_samples == int(2.5 * SR)
    # at least one hop, however short the minimum duration
    coarse = C.MelParams(n_mels=8, hop_length=400, win_length=400)
    assert AudioLimits.for_mel(coarse).min_samples == 400


def test_valid_audio_comes_back_one_dimensional():
    x = np.zeros(LIMITS.min_samples, np.float32)
    assert validate_audio(x, LIMITS) is x
    y = np.full((1, LIMITS.max_samples), C.MAX_ABS_SAMPLE, np.float32)  # both limits are inclusive
    out = validate_audio(y, LIMITS)
    assert out.shape == (LIMITS.max_samples,)


@pytest.mark.parametrize(
    "audio,message",
    [
        (np.zeros(1600, np.float64), f"input 'audio' must be FP32 samples at {SR} Hz, got float64"),
        (
            np.zeros((2, 1600), np.float32),
            "input 'audio' must have shape [1, samples] (one mono clip per request), got [2, 1600]",
        ),
        (
            np.zeros((1, 1, 1600), np.float32),
            "must have shape [1, samples] (one mono clip per request), got [1, 1, 1600]",
        ),
        (
            np.zeros(LIMITS.min_samples - 1, np.float32),
            f"input 'audio' has {LIMITS.min_samples - 1} samples; at least "
            f"{LIMITS.min_samples} ({LIMITS.min_samples / SR:g} s at {SR} Hz)",
        ),
        (
            np.zeros(LIMITS.max_samples + 1, np.float32),
            f"the limit is {C.MAX_AUDIO_SECONDS:g} s ({LIMITS.max_samples} samples); use the long-form entry point",
        ),
        (np.array([0.0] * 1599 + [np.nan], np.float32), "input 'audio' contains NaN or Inf samples"),
        (np.array([0.0] * 1599 + [-np.inf], np.float32), "input 'audio' contains NaN or Inf samples"),
        (
            np.array([0.0] * 1599 + [-65.0], np.float32),
            f"has a sample of magnitude 65; float PCM must stay within +-{C.MAX_ABS_SAMPLE:g} (expected [-1, 1])",
        ),
    ],
)
def test_bad_audio_is_refused_naming_the_problem_and_the_limit(audio, message):
    with pytest.raises(InputError) as e:
        validate_audio(audio, LIMITS)
    assert message in str(e.value)


def test_the_too_long_hint_and_the_input_name_are_the_callers():
    limits = AudioLimits(SR, 1, 10, too_long_hint="")
    with pytest.raises(InputError) as e:
        validate_audio(np.zeros(11, np.float32), limits, name="segment")
    assert (
        str(e.value) == f"input 'segment' is {11 / SR:.2f} s long (11 samples); the limit is {10 / SR:g} s (10 samples)"
    )


# -- token budget ----------------------------------------------------------------------------
def test_max_new_tokens_absent_is_the_default_and_one_integer_is_taken():
    assert validate_max_new_tokens(None) == C.DEFAULT_MAX_NEW_TOKENS
    assert validate_max_new_tokens(np.array([[7]], np.int32)) == 7
    assert validate_max_new_tokens(np.array([1], np.int64)) == 1
    assert validate_max_new_tokens(C.MAX_NEW_TOKENS_LIMIT) == C.MAX_NEW_TOKENS_LIMIT
    assert validate_max_new_tokens(2000, limit=4096) == 2000  # LLM mode: the export's limit


@pytest.mark.parametrize(
    "value,message",
    [
        (
            np.array([[1.0]], np.float32),
            "input 'max_new_tokens' must be one INT32 value, got float32 with shape [1, 1]",
        ),
        (np.array([[1, 2]], np.int32), "must be one INT32 value, got int32 with shape [1, 2]"),
        (np.array([[0]], np.int32), f"input 'max_new_tokens' is 0; it must be between 1 and {C.MAX_NEW_TOKENS_LIMIT}"),
        (
            np.array([[C.MAX_NEW_TOKENS_LIMIT + 1]], np.int32),
            f"is {C.MAX_NEW_TOKENS_LIMIT + 1}; it must be between 1 and {C.MAX_NEW_TOKENS_LIMIT}",
        ),
    ],
)
def test_bad_max_new_tokens_is_refused_naming_the_limit(value, message):
    with pytest.raises(InputError) as e:
        validate_max_new_tokens(value)
    assert message in str(e.value)


def test_asr_output_limit_is_the_smaller_of_the_request_and_the_duration_cap():
    cap = C.output_token_cap(2 * SR, SR)  # 2 s: 16 + 16 headroom
    assert cap == 32
    assert asr_output_limit(500, 2 * SR, SR) == cap
    assert asr_output_limit(5, 2 * SR, SR) == 5


# -- prompt ----------------------------------------------------------------------------------
def test_the_placeholder_becomes_one_fake_id_per_audio_frame():
    assert audio_prompt_ids(PROMPT, PLACEHOLDER, 3, VOCAB_ROWS) == [1, 2, 1000, 1001, 1002, 3]
    assert audio_prompt_ids(PROMPT, PLACEHOLDER, 0, VOCAB_ROWS) == [1, 2, 3]


@pytest.mark.parametrize("prompt", [[1, 2, 3], [PLACEHOLDER, 1, PLACEHOLDER]])
def test_a_prompt_needs_exactly_one_placeholder(prompt):
    with pytest.raises(ValueError, match="exactly one audio placeholder"):
        audio_prompt_ids(prompt, PLACEHOLDER, 3, VOCAB_ROWS)


# -- features --------------------------------------------------------------------------------
def test_each_clip_of_a_batch_gets_its_own_features_prompt_and_length(front_end):
    clips = [speechlike(s, seed=i) for i, s in enumerate((0.25, 1.013, 0.5))]
    pre = Preprocessor(front_end, PROMPT, PLACEHOLDER, VOCAB_ROWS, C.Subsampling())
    batch = pre(clips)
    assert len(batch) == 3
    for clip, got in zip(clips, batch):
        alone, valid = front_end(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))
        cols = C.mel_columns(len(clip), MEL)
        assert got.mel.dtype == np.float32 and got.mel.shape == (MEL.n_mels, cols)  # bucket 1: no padding
        assert got.mel_length == int(valid[0]) == C.num_mel_frames(len(clip), MEL)
        np.testing.assert_allclose(got.mel, alone[0].numpy(), atol=1e-4)  # the batch changes no clip
        frames = C.num_encoder_frames(got.mel_length, C.Subsampling())
        assert got.input_ids.dtype == np.int32
        assert got.input_ids.tolist() == [1, 2, *range(VOCAB_ROWS, VOCAB_ROWS + frames), 3]


def test_bucketing_pads_with_the_pad_value_to_a_multiple_of_the_bucket(front_end):
    params = C.MelParams(n_mels=8, pad_value=-7.0)
    fe = MelFrontEnd(params, front_end.fb, front_end.window)
    clips = [speechlike(0.3, seed=1), speechlike(0.75, seed=2)]
    plain = Preprocessor(fe, PROMPT, PLACEHOLDER, VOCAB_ROWS, C.Subsampling())(clips)
    padded = Preprocessor(fe, PROMPT, PLACEHOLDER, VOCAB_ROWS, C.Subsampling(), bucket_columns=50)(clips)
    for p, b in zip(plain, padded):
        cols = p.mel.shape[1]
        assert b.mel.shape == (8, 50 * -(-cols // 50))
        assert np.array_equal(b.mel[:, :cols], p.mel) and (b.mel[:, cols:] == -7.0).all()
        assert b.mel_length == p.mel_length and np.array_equal(b.input_ids, p.input_ids)


# -- LLM-mode text ---------------------------------------------------------------------------
def test_text_is_decoded_and_checked():
    assert decode_text("hello") == "hello"
    assert decode_text("ü".encode()) == "ü"
    assert decode_text(b"x" * C.MAX_TEXT_BYTES) == "x" * C.MAX_TEXT_BYTES


@pytest.mark.parametrize(
    "raw,role,message",
    [
        (
            b"x" * (C.MAX_TEXT_BYTES + 1),
            "",
            f"input 'text_input' is {C.MAX_TEXT_BYTES + 1} bytes; the limit is {C.MAX_TEXT_BYTES}",
        ),
        (b"ok \xff", "", "input 'text_input' is not valid UTF-8 (byte 3)"),
        (b"  \n\t", "", "input 'text_input' is empty"),
        ("", "instruction", "input 'text_input' (instruction) is empty"),
    ],
)
def test_bad_text_is_refused_naming_the_input(raw, role, message):
    with pytest.raises(InputError) as e:
        decode_text(raw, role=role)
    assert str(e.value) == message


class _Tokenizer:
    """What llm_mode_prompt needs of the tokenizer: one id per character, plus 3 around the turn."""

    def llm_prompt_ids(self, text: str) -> list[int]:
        return [0] + [ord(ch) for ch in text] + [0, 0]


def test_llm_mode_prompt_is_the_tokenizers_user_turn():
    assert llm_mode_prompt(_Tokenizer(), b"hi") == [0, ord("h"), ord("i"), 0, 0]


def test_llm_mode_refuses_the_audio_tag_and_prompts_over_the_limit():
    with pytest.raises(InputError, match=r"input 'text_input' may not contain <\|audioplaceholder\|>"):
        llm_mode_prompt(_Tokenizer(), f"say {C.AUDIO_PLACEHOLDER_TOKEN}")
    just_fits = "x" * (C.MAX_TEXT_PROMPT_TOKENS - 3)
    assert len(llm_mode_prompt(_Tokenizer(), just_fits)) == C.MAX_TEXT_PROMPT_TOKENS
    with pytest.raises(InputError) as e:
        llm_mode_prompt(_Tokenizer(), just_fits + "x")
    assert str(e.value) == (
        f"input 'text_input' makes a prompt of {C.MAX_TEXT_PROMPT_TOKENS + 1} tokens; "
        f"the limit is {C.MAX_TEXT_PROMPT_TOKENS}"
    )
