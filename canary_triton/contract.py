"""The model contract of Canary-Qwen-2.5B as served by this project: the one place for it.

Everything that export, the Triton models, the client and the tests must agree on lives here:
special token strings, the NeMo ``qwen`` prompt format, mel parameters, frame-count arithmetic,
the tensors exchanged between Triton models and the serving limits. No other module writes any of
these constants again; they import them.

Token *ids* are not constants: they depend on the tokenizer a checkpoint ships with. They are
resolved once from the tokenizer into :class:`SpecialIds` (for the real Qwen3-1.7B tokenizer they
are 151643/151644/151645 and the placeholder 151669; the tiny test tokenizers give other ids).
Dimensions (encoder width, LLM hidden size, vocabulary rows, LoRA rank/alpha) are read from each
checkpoint's config; nothing here assumes the real model's sizes.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

# --------------------------------------------------------------------------------------------
# Special tokens (Qwen3 + the audio locator tag NeMo adds) and the ``qwen`` prompt format
# --------------------------------------------------------------------------------------------
PAD_TOKEN = "<|endoftext|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"  # the only EOS of generation
AUDIO_PLACEHOLDER_TOKEN = "<|audioplaceholder|>"

#: Qwen3's added special tokens in id order (151643 ... 151668 in the real tokenizer).
QWEN3_SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    IM_START_TOKEN,
    IM_END_TOKEN,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
#: Added tokens that Qwen3 does *not* mark special (they survive ``skip_special_tokens``).
QWEN3_NON_SPECIAL_ADDED = frozenset(
    {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"}
)

#: NeMo ``qwen`` prompt format (``nemo/collections/common/prompts/qwen.py``). Each turn is
#: rendered from its template and tokenised on its own, without BOS/EOS insertion; the inference
#: prefix follows when the last turn is the user's. No system turn, no ``<think>`` block.
PROMPT_FORMAT_NAME = "qwen"
USER_TURN_TEMPLATE = IM_START_TOKEN + "user\n{message}" + IM_END_TOKEN + "\n"
ASSISTANT_TURN_TEMPLATE = IM_START_TOKEN + "assistant\n{message}" + IM_END_TOKEN + "\n"
INFERENCE_PREFIX = IM_START_TOKEN + "assistant\n"

#: The ASR instruction used by the model card and the Open ASR Leaderboard script.
ASR_INSTRUCTION = "Transcribe the following: " + AUDIO_PLACEHOLDER_TOKEN

# LLM mode over a transcript, as the model card's example: the instruction, a blank line, the text.
SUMMARIZE_INSTRUCTION = "Summarize the following transcript in a few sentences."
LLM_MODE_TEXT_TEMPLATE = "{instruction}\n\n{transcript}"


def llm_mode_text(instruction: str, transcript: str | None = None) -> str:
    """The user turn of an LLM-mode request: an instruction, optionally about a transcript."""
    if transcript is None:
        return instruction
    return LLM_MODE_TEXT_TEMPLATE.format(instruction=instruction.strip(), transcript=transcript.strip())


#: The real Qwen3-1.7B tokenizer's ids: documentation and a sanity check for real checkpoints.
REAL_MODEL_IDS = {"pad": 151643, "im_start": 151644, "im_end": 151645, "audio_placeholder": 151669}


@dataclass(frozen=True)
class SpecialIds:
    """Token ids resolved from one tokenizer (see :func:`canary_triton.checkpoint.tokenizer`)."""

    pad: int
    im_start: int
    im_end: int
    audio_placeholder: int

    @property
    def eos(self) -> int:
        return self.im_end


# --------------------------------------------------------------------------------------------
# Mel front end (NeMo >= 2.5 ``FilterbankFeatures``)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MelParams:
    """Parameters of NeMo's ``AudioToMelSpectrogramPreprocessor`` as Canary-Qwen uses them.

    Defaults are the Canary-Qwen-2.5B values; :meth:`from_config` reads a checkpoint's
    ``perception.preprocessor`` section and refuses settings this front end does not implement.
    """

    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    preemph: float = 0.97
    log_zero_guard: float = 2.0**-24
    mag_power: float = 2.0
    std_epsilon: float = 1e-5  # NeMo's CONSTANT added to the per-feature std
    pad_value: float = 0.0

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @classmethod
    def from_config(cls, pre: Mapping[str, Any]) -> "MelParams":
        def get(key: str, default: Any) -> Any:
            value = pre.get(key, default)
            return default if value is None else value

        unsupported = {
            "normalize": ("per_feature", get("normalize", "per_feature")),
            "window": ("hann", get("window", "hann")),
            "log": (True, get("log", True)),
            "frame_splicing": (1, get("frame_splicing", 1)),
            "exact_pad": (False, get("exact_pad", False)),
            "log_zero_guard_type": ("add", get("log_zero_guard_type", "add")),
            "pad_to": (0, get("pad_to", 0)),
        }
        for key, (want, got) in unsupported.items():
            if got != want:
                raise ValueError(
                    f"preprocessor setting {key}={got!r} is not supported by this front end "
                    f"(expected {want!r}, as in Canary-Qwen-2.5B)"
                )
        sample_rate = int(get("sample_rate", cls.sample_rate))
        guard = get("log_zero_guard_value", cls.log_zero_guard)
        if isinstance(guard, str):
            finfo = np.finfo(np.float32)
            guard = {"tiny": float(finfo.tiny), "eps": float(finfo.eps)}[guard]
        return cls(
            sample_rate=sample_rate,
            n_mels=int(get("features", get("nfilt", cls.n_mels))),
            n_fft=int(get("n_fft", cls.n_fft)),
            win_length=int(round(float(get("window_size", 0.025)) * sample_rate)),
            hop_length=int(round(float(get("window_stride", 0.01)) * sample_rate)),
            preemph=float(get("preemph", cls.preemph)),
            log_zero_guard=float(guard),
            mag_power=float(get("mag_power", cls.mag_power)),
            pad_value=float(get("pad_value", cls.pad_value)),
        )


def num_mel_frames(num_samples: int, mel: MelParams = MelParams()) -> int:
    """Valid mel frames for ``num_samples`` samples: NeMo's ``get_seq_len`` with ``center=True``.

    ``floor((N + 2*(n_fft//2) - n_fft) / hop)``, i.e. ``floor(N / hop)`` for an even ``n_fft``.
    The feature tensor itself has ``N // hop + 1`` columns; the last one is padding.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return (num_samples + (mel.n_fft // 2) * 2 - mel.n_fft) // mel.hop_length


@dataclass(frozen=True)
class Subsampling:
    """The encoder's convolutional subsampling, read from ``perception.encoder``."""

    factor: int = 8
    kernel_size: int = 3
    stride: int = 2

    @property
    def repeats(self) -> int:
        return int(np.log2(self.factor))

    @classmethod
    def from_config(cls, enc: Mapping[str, Any]) -> "Subsampling":
        kind = enc.get("subsampling", "dw_striding")
        factor = int(enc.get("subsampling_factor", 8))
        if kind not in ("dw_striding", "striding"):
            raise ValueError(f"encoder subsampling {kind!r} is not supported (expected 'dw_striding')")
        if factor < 2 or factor & (factor - 1):
            raise ValueError(f"encoder subsampling_factor must be a power of two, got {factor}")
        if enc.get("causal_downsampling", False):
            raise ValueError("causal_downsampling=True is not supported (Canary-Qwen uses False)")
        return cls(factor=factor)


def num_encoder_frames(num_mel: int, sub: Subsampling = Subsampling()) -> int:
    """Encoder output frames for ``num_mel`` valid mel frames: NeMo's ``calc_length``.

    Each of ``log2(factor)`` stride-2 convolutions (kernel 3, padding 1) maps
    ``L -> floor((L + 2*pad - kernel) / stride) + 1``.
    """
    pad = (sub.kernel_size - 1) // 2
    length = num_mel
    for _ in range(sub.repeats):
        length = (length + 2 * pad - sub.kernel_size) // sub.stride + 1
    return max(length, 0)


def num_audio_frames(num_samples: int, mel: MelParams = MelParams(), sub: Subsampling = Subsampling()) -> int:
    """Audio embeddings (prompt-table rows) produced for ``num_samples`` samples of audio."""
    return num_encoder_frames(num_mel_frames(num_samples, mel), sub)


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------
#: The model was trained on clips up to 40 s (500 encoder frames). Longer audio goes through the
#: long-form path, which splits it into segments no longer than this.
MAX_AUDIO_SECONDS = 40.0
#: Shortest clip accepted: one encoder frame needs at least one hop of samples.
MIN_AUDIO_SECONDS = 0.01
DEFAULT_MAX_NEW_TOKENS = 128  # NeMo / Open ASR Leaderboard setting
MAX_NEW_TOKENS_LIMIT = 512  # training used 1024 total tokens; prompt + audio take up to ~515
MAX_TEXT_PROMPT_TOKENS = 1024  # LLM mode: longest prompt (instruction + transcript) in tokens
ENGINE_PROMPT_TOKENS = 64  # TensorRT-LLM engines: room for the text part of an ASR prompt (15 ids)
MAX_TEXT_BYTES = 64 * 1024  # LLM mode: longest text_input accepted, in UTF-8 bytes
MAX_TEMPERATURE = 2.0
#: Largest absolute sample value accepted (float PCM is nominally within [-1, 1]).
MAX_ABS_SAMPLE = 64.0
#: Hallucination guard: an ASR answer may hold at most this many tokens per second of audio plus
#: the headroom, whatever max_new_tokens asks. Fast read speech is about 4 words/s, about 5-6
#: Qwen3 tokens/s; 8/s + 16 leaves room for digits and rare words, and stops noise or silence from
#: producing runaway text (a 2 s clip of silence: at most 32 tokens instead of 128 or 512).
MAX_OUTPUT_TOKENS_PER_AUDIO_SECOND = 8.0
OUTPUT_TOKEN_HEADROOM = 16
#: Long-form entry point: longest recording accepted by default (one hour), and segmenting.
MAX_LONG_FORM_SECONDS = 3600.0
#: Short-form VAD gate (export --vad-gate): the preprocessor's request_output_len for a clip with
#: no speech; `llm_unary` and `canary_qwen_stream` then answer "" without running the LLM.
NO_SPEECH_OUTPUT_LEN = 0


def output_token_cap(num_samples: int, sample_rate: int) -> int:
    """Most tokens an ASR answer may hold for ``num_samples`` of audio (the hallucination guard)."""
    return int(math.ceil(num_samples / sample_rate * MAX_OUTPUT_TOKENS_PER_AUDIO_SECOND)) + OUTPUT_TOKEN_HEADROOM


def max_audio_samples(mel: MelParams = MelParams()) -> int:
    return int(MAX_AUDIO_SECONDS * mel.sample_rate)


def mel_columns(num_samples: int, mel: MelParams = MelParams()) -> int:
    """Columns of the mel feature tensor for ``num_samples`` (the centred STFT's ``N // hop + 1``;
    one more than :func:`num_mel_frames`, the last column being padding)."""
    return num_samples // mel.hop_length + 1


def max_mel_columns(mel: MelParams = MelParams()) -> int:
    """Columns of the longest mel tensor any model takes: a clip at the audio limit (4001 for 40 s)."""
    return mel_columns(max_audio_samples(mel), mel)


def max_table_rows(mel: MelParams = MelParams(), sub: Subsampling = Subsampling()) -> int:
    """Rows of the largest prompt-embedding table: the encoder frames of :func:`max_mel_columns`.

    A TensorRT encoder returns every frame of its (padded) input, not only the valid ones, so a
    40 s clip's table has 501 rows (4001 columns), one more than its 500 valid audio frames. Every
    row limit (the llm's check, the TensorRT-LLM engine's ``max_prompt_embedding_table_size``)
    is this number, so a clip at the limit is never refused.
    """
    return num_encoder_frames(max_mel_columns(mel), sub)


def llm_max_input_len(table_rows: int, prompt_tokens: int = ENGINE_PROMPT_TOKENS) -> int:
    """The longest prompt an LLM engine takes: an ASR prompt (``prompt_tokens`` of text and
    ``table_rows`` audio rows) or an LLM-mode prompt (:data:`MAX_TEXT_PROMPT_TOKENS`)."""
    return max(prompt_tokens + table_rows, MAX_TEXT_PROMPT_TOKENS)


#: Encoder batching: the preprocessor pads each clip's mel features to a multiple of this many
#: seconds of frames (capped at :func:`max_mel_columns`), so clips of similar length have equal
#: shapes and Triton's dynamic batcher can group them (a TensorRT plan batches equal shapes only).
#: True lengths travel in ``mel_length``. 2 s: 200 mel columns, 25 encoder frames.
DEFAULT_MEL_BUCKET_SECONDS = 2.0


def mel_bucket_columns(bucket_seconds: float, mel: MelParams = MelParams()) -> int:
    """The bucket width in mel columns; refuses a width outside (0, MAX_AUDIO_SECONDS]."""
    if not 0 < bucket_seconds <= MAX_AUDIO_SECONDS:
        raise ValueError(f"mel bucket width must be in (0, {MAX_AUDIO_SECONDS:g}] seconds, got {bucket_seconds:g}")
    return max(1, int(round(bucket_seconds * mel.sample_rate / mel.hop_length)))


def bucketed_columns(columns: int, bucket_columns: int, mel: MelParams = MelParams()) -> int:
    """``columns`` rounded up to the next multiple of ``bucket_columns``, at most max_mel_columns."""
    if bucket_columns < 1:
        raise ValueError(f"bucket_columns must be >= 1, got {bucket_columns}")
    return min(-(-columns // bucket_columns) * bucket_columns, max(columns, max_mel_columns(mel)))


# --------------------------------------------------------------------------------------------
# Why a generation ended (vLLM's finish reasons)
# --------------------------------------------------------------------------------------------
class FinishReason(str, enum.Enum):
    """Why a request left the LLM engine, in vLLM's words; the value is what travels (the
    ``finish_reason`` output, the ``outcome`` label of ``canary_llm_requests_total``, OpenAI's
    ``finish_reason``).

    Only :attr:`STOP` (the end id was generated) and :attr:`LENGTH` (the request's output-length
    limit cut it) are answers. :attr:`ABORTED` (the engine stopped: model unloaded, server shutting
    down) and :attr:`ERROR` (the request failed) are error responses, never outputs.
    :attr:`CANCELLED` (by its client, a stop request, or a response send that stalled) ends the
    ``llm``'s response stream with the tokens so far, as TensorRT-LLM answers a stop request; the
    entry points answer their cancelled caller with a CANCELLED error."""

    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    ERROR = "error"

    def __str__(self) -> str:  # the value, whatever the Python version's Enum formatting
        return self.value

    @property
    def ok(self) -> bool:
        """Whether the request finished with an answer (stop or length)."""
        return self in (FinishReason.STOP, FinishReason.LENGTH)


# --------------------------------------------------------------------------------------------
# Tensors between Triton models (same names and dtypes in the CPU and GPU profiles)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton type name, e.g. "TYPE_FP32"
    dims: tuple[int, ...]  # without the batch dimension
    optional: bool = False
    reshape: tuple[int, ...] | None = None
    ragged: bool = False


#: Triton's text for a request refused by admission control (a model's ``max_queue_size``). Its
#: status is UNAVAILABLE (retry later); only the text survives a decoupled BLS hop (Triton 2.51
#: answers INTERNAL there), so the forwarding models and the client recognise it by this text.
QUEUE_FULL_MESSAGE = "Exceeds maximum queue size"

#: Model names in the generated repository.
ENSEMBLE_MODEL = "canary_qwen"  # unary entry point (HTTP and gRPC)
STREAM_MODEL = "canary_qwen_stream"  # streaming entry point (gRPC streaming): partial transcripts
LLM_MODE_MODEL = "canary_qwen_llm"  # LLM mode entry point: text in, text out, base Qwen3 (no LoRA)
ASK_MODEL = "canary_qwen_ask"  # audio + instruction -> transcript + answer (ASR then LLM mode)
LONG_FORM_MODEL = "canary_qwen_long"  # unary: audio of any length up to the long-form limit -> transcript
LONG_FORM_STREAM_MODEL = "canary_qwen_long_stream"  # decoupled: one transcript piece per segment, in order
LLM_BASE_MODEL = "llm_base"  # decoupled, the base Qwen3 with the TensorRT-LLM tensors
PREPROCESSOR_MODEL = "preprocessor"
ENCODER_MODEL = "encoder"
PROJECTOR_MODEL = "projector"
LLM_MODEL = "llm"  # decoupled, as TensorRT-LLM's decoupled_mode (streaming-capable)
LLM_UNARY_MODEL = "llm_unary"  # the unary face of llm for the ensemble
POSTPROCESSOR_MODEL = "postprocessor"
#: The models of the short-form ASR pipeline behind the ensemble (llm_unary is llm's unary face).
ASR_PIPELINE_MODELS = (
    PREPROCESSOR_MODEL,
    ENCODER_MODEL,
    PROJECTOR_MODEL,
    LLM_MODEL,
    LLM_UNARY_MODEL,
    POSTPROCESSOR_MODEL,
)
#: The models a client calls (the entry points; every other model is called only by these).
ENTRY_MODELS = (ENSEMBLE_MODEL, STREAM_MODEL, LLM_MODE_MODEL, ASK_MODEL, LONG_FORM_MODEL, LONG_FORM_STREAM_MODEL)
#: Every model of the generated repository, in the order the export describes them.
ALL_MODELS = (
    *ASR_PIPELINE_MODELS,
    ENSEMBLE_MODEL,
    STREAM_MODEL,
    LLM_BASE_MODEL,
    LLM_MODE_MODEL,
    LONG_FORM_MODEL,
    LONG_FORM_STREAM_MODEL,
    ASK_MODEL,
)

# Client-facing ensemble tensors.
AUDIO = TensorSpec("audio", "TYPE_FP32", (-1,))  # 16 kHz mono samples, nominally in [-1, 1]
MAX_NEW_TOKENS = TensorSpec("max_new_tokens", "TYPE_INT32", (1,), optional=True)
TRANSCRIPT = TensorSpec("transcript", "TYPE_STRING", (1,))
#: Long-form: the segments as JSON, [{"start": s, "end": s, "text": "..."}] (seconds); in the
#: streaming variant each response carries the segment its text came from.
SEGMENTS = TensorSpec("segments", "TYPE_STRING", (1,))

# LLM mode entry point (TensorRT-LLM ensemble names)
TEXT_INPUT = TensorSpec("text_input", "TYPE_STRING", (1,))
TEXT_OUTPUT = TensorSpec("text_output", "TYPE_STRING", (1,))
TOP_P = TensorSpec("top_p", "TYPE_FP32", (1,), optional=True)
#: Why the answer ended: ``stop`` or ``length`` (:class:`FinishReason`; the other reasons are errors).
#: Both profiles derive it from the llm's token ids and lengths (cpu_llm.request.finish_reason_of).
FINISH_REASON = TensorSpec("finish_reason", "TYPE_STRING", (1,))

# preprocessor -> encoder
MEL = TensorSpec("mel", "TYPE_FP32", (-1, -1))  # [n_mels, T_mel]
MEL_LENGTH = TensorSpec("mel_length", "TYPE_INT64", (1,), reshape=())  # int64: as the ONNX/TensorRT encoder takes it
# preprocessor -> llm (TensorRT-LLM backend names)
INPUT_IDS = TensorSpec("input_ids", "TYPE_INT32", (-1,), ragged=True)
INPUT_LENGTHS = TensorSpec("input_lengths", "TYPE_INT32", (1,), reshape=())
REQUEST_OUTPUT_LEN = TensorSpec("request_output_len", "TYPE_INT32", (1,), reshape=())
END_ID = TensorSpec("end_id", "TYPE_INT32", (1,), optional=True, reshape=())
PAD_ID = TensorSpec("pad_id", "TYPE_INT32", (1,), optional=True, reshape=())
STREAMING = TensorSpec("streaming", "TYPE_BOOL", (1,), optional=True, reshape=())
#: TensorRT-LLM's cancellation: a request with ``stop`` true and the request id of one in flight
#: stops that one (the backend's ``handleStopRequest``; it ignores custom request parameters). The
#: BLS models send it when their caller is cancelled; the CPU ``llm`` honours it the same way.
STOP = TensorSpec("stop", "TYPE_BOOL", (1,), optional=True, reshape=())
# sampling (TensorRT-LLM backend names); absent or temperature 0: greedy, as NeMo
TEMPERATURE = TensorSpec("temperature", "TYPE_FP32", (1,), optional=True, reshape=())
RUNTIME_TOP_P = TensorSpec("runtime_top_p", "TYPE_FP32", (1,), optional=True, reshape=())
SEED = TensorSpec("seed", "TYPE_UINT64", (1,), optional=True, reshape=())
# encoder -> projector
ENCODED = TensorSpec("encoded", "TYPE_FP32", (-1, -1))  # [T_enc, d_model]
ENCODED_LENGTH = TensorSpec("encoded_length", "TYPE_INT64", (1,), reshape=())
# projector -> llm
PROMPT_EMBEDDING_TABLE = TensorSpec("prompt_embedding_table", "TYPE_FP32", (-1, -1), optional=True, ragged=True)
#: The table's dtype per profile: the TensorRT-LLM engine requires its own dtype (bf16).
PROMPT_TABLE_DTYPE = {"cpu": "TYPE_FP32", "gpu": "TYPE_BF16"}
PROMPT_VOCAB_SIZE = TensorSpec("prompt_vocab_size", "TYPE_INT32", (1,), optional=True, reshape=())
# llm -> postprocessor
OUTPUT_IDS = TensorSpec("output_ids", "TYPE_INT32", (-1, -1))  # [beams, L]
SEQUENCE_LENGTH = TensorSpec("sequence_length", "TYPE_INT32", (-1,))  # [beams]
