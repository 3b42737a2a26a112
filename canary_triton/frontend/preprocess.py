"""Request validation and preprocessing for the served pipeline (no Triton here).

Audio in -> mel features + the prompt ids with one fake id per audio frame where the audio goes
(ids >= vocab rows address rows of the prompt-embedding table: TensorRT-LLM's convention).
Every check names the input and the limit, so a client can act on the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from canary_triton import contract as C
from canary_triton.errors import InputError

if TYPE_CHECKING:  # torch is imported where mel is computed: the BLS models import this module without it
    from canary_triton.frontend.features import MelFrontEnd


@dataclass(frozen=True)
class AudioLimits:
    sample_rate: int
    min_samples: int
    max_samples: int
    max_abs: float = C.MAX_ABS_SAMPLE
    too_long_hint: str = "use the long-form entry point"

    @classmethod
    def for_mel(cls, mel: C.MelParams, max_seconds: float = C.MAX_AUDIO_SECONDS) -> "AudioLimits":
        # At least one hop: fewer samples give no valid mel frame and no audio embedding.
        return cls(
            mel.sample_rate,
            max(mel.hop_length, int(C.MIN_AUDIO_SECONDS * mel.sample_rate)),
            int(max_seconds * mel.sample_rate),
        )


def validate_audio(x: np.ndarray, limits: AudioLimits, name: str = C.AUDIO.name) -> np.ndarray:
    """One request's audio as 1-D float32; raises :class:`InputError` naming the problem."""
    if x.dtype != np.float32:
        raise InputError(f"input '{name}' must be FP32 samples at {limits.sample_rate} Hz, got {x.dtype}")
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise InputError(
            f"input '{name}' must have shape [1, samples] (one mono clip per request), got {list(x.shape)}"
        )
    n = x.shape[0]
    sr = limits.sample_rate
    if n < limits.min_samples:
        raise InputError(
            f"input '{name}' has {n} samples; at least {limits.min_samples} "
            f"({limits.min_samples / sr:g} s at {sr} Hz) are needed"
        )
    if n > limits.max_samples:
        raise InputError(
            f"input '{name}' is {n / sr:.2f} s long ({n} samples); the limit is "
            f"{limits.max_samples / sr:g} s ({limits.max_samples} samples)"
            + (f"; {limits.too_long_hint}" if limits.too_long_hint else "")
        )
    if not np.isfinite(x).all():
        raise InputError(f"input '{name}' contains NaN or Inf samples")
    peak = float(np.abs(x).max())
    if peak > limits.max_abs:
        raise InputError(
            f"input '{name}' has a sample of magnitude {peak:g}; float PCM must stay within "
            f"+-{limits.max_abs:g} (expected [-1, 1])"
        )
    return x


def validate_max_new_tokens(
    value: np.ndarray | int | None, name: str = C.MAX_NEW_TOKENS.name, limit: int = C.MAX_NEW_TOKENS_LIMIT
) -> int:
    """A request's token budget: one integer in [1, ``limit``] (ASR: the contract's 512; LLM mode:
    the export's ``limits.llm_max_output_len``); absent: the contract's default."""
    if value is None:
        return C.DEFAULT_MAX_NEW_TOKENS
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"input '{name}' must be one INT32 value, got {arr.dtype} with shape {list(arr.shape)}")
    v = int(arr.reshape(-1)[0])
    if not 1 <= v <= limit:
        raise InputError(f"input '{name}' is {v}; it must be between 1 and {limit}")
    return v


def asr_output_limit(requested: int, num_samples: int, sample_rate: int) -> int:
    """``max_new_tokens`` as asked, bounded by the audio's duration (C.output_token_cap)."""
    return min(requested, C.output_token_cap(num_samples, sample_rate))


def audio_prompt_ids(prompt_ids: list[int], placeholder_id: int, n_frames: int, vocab_rows: int) -> list[int]:
    """Replace the one placeholder id by ``n_frames`` fake ids ``vocab_rows .. vocab_rows + n - 1``."""
    if prompt_ids.count(placeholder_id) != 1:
        raise ValueError("the prompt must hold exactly one audio placeholder id")
    k = prompt_ids.index(placeholder_id)
    return prompt_ids[:k] + list(range(vocab_rows, vocab_rows + n_frames)) + prompt_ids[k + 1 :]


@dataclass(frozen=True)
class Preprocessed:
    mel: np.ndarray  # [n_mels, bucketed(N // hop + 1)] float32, pad_value past the valid frames
    mel_length: int  # valid frames
    input_ids: np.ndarray  # [L] int32


class Preprocessor:
    """Mel features for a batch of clips (one padded STFT batch) and their ASR prompts.

    Each clip's mel tensor is padded (with the pad value) to a multiple of ``bucket_columns``
    (C.bucketed_columns), so clips of similar length share a shape and the encoder's
    dynamic batcher can group them; ``mel_length`` keeps the true length, and the encoder masks
    by it, so the padding changes no output. ``bucket_columns`` 1: no padding.
    """

    def __init__(
        self,
        front_end: MelFrontEnd,
        asr_prompt_ids: list[int],
        placeholder_id: int,
        vocab_rows: int,
        subsampling: C.Subsampling,
        bucket_columns: int = 1,
    ):
        self.front_end = front_end
        self.prompt = list(asr_prompt_ids)
        self.placeholder = placeholder_id
        self.vocab_rows = vocab_rows
        self.subsampling = subsampling
        self.bucket_columns = bucket_columns
        self.limits = AudioLimits.for_mel(front_end.params)

    def __call__(self, clips: list[np.ndarray]) -> list[Preprocessed]:
        import torch

        lens = torch.tensor([len(c) for c in clips], dtype=torch.long)
        batch = torch.zeros(len(clips), int(lens.max()), dtype=torch.float32)
        for i, c in enumerate(clips):
            batch[i, : len(c)] = torch.from_numpy(c)
        feats, valid = self.front_end(batch, lens)
        params = self.front_end.params
        out = []
        for i, c in enumerate(clips):
            m = int(valid[i])
            frames = C.num_encoder_frames(m, self.subsampling)
            ids = audio_prompt_ids(self.prompt, self.placeholder, frames, self.vocab_rows)
            cols = C.mel_columns(len(c), params)
            mel = np.full(
                (feats.shape[1], C.bucketed_columns(cols, self.bucket_columns, params)),
                params.pad_value,
                dtype=np.float32,
            )
            mel[:, :cols] = feats[i, :, :cols].numpy()
            out.append(Preprocessed(mel, m, np.asarray(ids, dtype=np.int32)))
        return out


def decode_text(raw: bytes | str, name: str = C.TEXT_INPUT.name, role: str = "") -> str:
    """A BYTES input as text: at most MAX_TEXT_BYTES of UTF-8, not blank (``role`` names it in errors)."""
    label = f"input '{name}'" + (f" ({role})" if role else "")
    if isinstance(raw, bytes):
        if len(raw) > C.MAX_TEXT_BYTES:
            raise InputError(f"{label} is {len(raw)} bytes; the limit is {C.MAX_TEXT_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{label} is not valid UTF-8 (byte {e.start})") from None
    if not raw.strip():
        raise InputError(f"{label} is empty")
    return raw


def llm_mode_prompt(tokenizer, raw: bytes | str, name: str = C.TEXT_INPUT.name) -> list[int]:
    """LLM mode (adapter off): the user's text as one ``qwen`` user turn, validated."""
    raw = decode_text(raw, name)
    if C.AUDIO_PLACEHOLDER_TOKEN in raw:
        raise InputError(f"input '{name}' may not contain {C.AUDIO_PLACEHOLDER_TOKEN}")
    ids = tokenizer.llm_prompt_ids(raw)
    if len(ids) > C.MAX_TEXT_PROMPT_TOKENS:
        raise InputError(f"input '{name}' makes a prompt of {len(ids)} tokens; the limit is {C.MAX_TEXT_PROMPT_TOKENS}")
    return ids
