"""The bad-input matrix: each case is one request a client could send, and what it must get back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from canary_triton import contract as C

SR = 16000
_DT = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.object_): "BYTES",
    np.dtype(np.bool_): "BOOL",
}


@dataclass(frozen=True)
class Case:
    id: str
    model: str
    inputs: dict  # name -> array (with the batch dimension)
    message: str  # a piece of the error message (names the input and the limit)
    status_grpc: str = "INVALID_ARG"  # piece of the gRPC status code
    status_http: str = "400"
    extra: dict = field(default_factory=dict)


def _one(v, dt=np.int32):
    return np.array([[v]], dtype=dt)


def _text(b: bytes):
    return np.array([[b]], dtype=np.object_)


def _llm_inputs(ids, out_len=4, **more):
    d = {"input_ids": np.array([ids], np.int32), "input_lengths": _one(len(ids)), "request_output_len": _one(out_len)}
    d.update(more)
    return d


def cases(vocab_rows: int, n_mels: int, enc_dim: int, max_frames: int) -> list[Case]:
    ok_audio = (0.1 * np.sin(np.arange(SR) / 7)).astype(np.float32)[None]
    E, S, L = C.ENSEMBLE_MODEL, C.STREAM_MODEL, C.LLM_MODE_MODEL
    out = [
        Case("fp64_audio", E, {"audio": np.zeros((1, 1600), np.float64)}, "audio", "INVALID_ARG", "400"),
        Case("rank3_audio", E, {"audio": np.zeros((1, 2, 1600), np.float32)}, "audio", "INVALID_ARG", "400"),
        Case("empty_audio", E, {"audio": np.zeros((1, 0), np.float32)}, "'audio' has 0 samples; at least 160"),
        Case("one_sample", E, {"audio": np.zeros((1, 1), np.float32)}, "'audio' has 1 samples; at least 160"),
        Case("over_40s", E, {"audio": np.zeros((1, 41 * SR), np.float32)}, "the limit is 40 s"),
        Case("nan", E, {"audio": np.array([[0.1, np.nan] * 800], np.float32)}, "'audio' contains NaN or Inf"),
        Case("inf", E, {"audio": np.array([[0.1, -np.inf] * 800], np.float32)}, "'audio' contains NaN or Inf"),
        Case("huge", E, {"audio": np.full((1, 1600), 1e6, np.float32)}, "within +-64"),
        Case(
            "tokens_0",
            E,
            {"audio": ok_audio, "max_new_tokens": _one(0)},
            "'max_new_tokens' is 0; it must be between 1 and 512",
        ),
        Case("tokens_513", E, {"audio": ok_audio, "max_new_tokens": _one(513)}, "'max_new_tokens' is 513"),
        Case(
            "tokens_fp32",
            E,
            {"audio": ok_audio, "max_new_tokens": _one(5, np.float32)},
            "max_new_tokens",
            "INVALID_ARG",
            "400",
        ),
        Case("unknown_input", E, {"audio": ok_audio, "speaker": _one(1)}, "speaker", "INVALID_ARG", "400"),
        # Triton core's own answer for an ensemble missing a required input (no input name in it)
        Case("missing_audio", E, {"max_new_tokens": _one(5)}, "at least one output is not set", "INVALID_ARG", "400"),
        Case("stream_short", S, {"audio": np.zeros((1, 5), np.float32)}, "at least 160"),
        Case("llm_not_utf8", L, {"text_input": _text(b"\xff\xfe bad")}, "'text_input' is not valid UTF-8"),
        Case("llm_empty", L, {"text_input": _text(b"   ")}, "'text_input' is empty"),
        Case(
            "llm_oversized",
            L,
            {"text_input": _text(b"a " * (C.MAX_TEXT_BYTES // 2 + 1))},
            f"the limit is {C.MAX_TEXT_BYTES}",
        ),
        Case("llm_placeholder", L, {"text_input": _text(C.AUDIO_PLACEHOLDER_TOKEN.encode())}, "may not contain"),
        Case("llm_temperature", L, {"text_input": _text(b"hi"), "temperature": _one(9.0, np.float32)}, "temperature"),
        Case("llm_tokens_0", L, {"text_input": _text(b"hi"), "max_new_tokens": _one(0)}, "'max_new_tokens' is 0"),
        Case(
            "preprocessor_nan", C.PREPROCESSOR_MODEL, {"audio": np.array([[np.nan] * 1600], np.float32)}, "NaN or Inf"
        ),
        Case(
            "encoder_wrong_mels",
            C.ENCODER_MODEL,
            {"mel": np.zeros((1, n_mels + 3, 50), np.float32), "mel_length": _one(50, np.int64)},
            f"unexpected shape for input 'mel' for model 'encoder'. Expected [-1,{n_mels},-1]",
        ),
        Case(
            "encoder_bad_length",
            C.ENCODER_MODEL,
            {"mel": np.zeros((1, n_mels, 50), np.float32), "mel_length": _one(99, np.int64)},
            "'mel_length' must be one value in 1..50",
        ),
        Case(
            "encoder_too_long",
            C.ENCODER_MODEL,
            {"mel": np.zeros((1, n_mels, max_frames + 1), np.float32), "mel_length": _one(10, np.int64)},
            f"the limit is 1..{max_frames}",
        ),
        Case(
            "projector_wrong_dim",
            C.PROJECTOR_MODEL,
            {"encoded": np.zeros((1, 5, enc_dim + 1), np.float32)},
            f"unexpected shape for input 'encoded' for model 'projector'. Expected [-1,-1,{enc_dim}]",
        ),
        Case(
            "projector_nan",
            C.PROJECTOR_MODEL,
            {"encoded": np.full((1, 5, enc_dim), np.nan, np.float32)},
            "'encoded' contains NaN or Inf",
        ),
        Case(
            "llm_id_beyond_vocab",
            C.LLM_UNARY_MODEL,
            _llm_inputs([5, vocab_rows + 3]),
            f"ids must be in [0, {vocab_rows})",
        ),
        Case("llm_output_len_0", C.LLM_UNARY_MODEL, _llm_inputs([5, 6], out_len=0), "request_output_len"),
        Case(
            "postprocessor_bad_ids",
            C.POSTPROCESSOR_MODEL,
            {"output_ids": np.array([[[5, vocab_rows + 9]]], np.int32), "sequence_length": _one(2)},
            f"outside 0..{vocab_rows - 1}",
        ),
        Case(
            "postprocessor_bad_length",
            C.POSTPROCESSOR_MODEL,
            {"output_ids": np.array([[[5, 6]]], np.int32), "sequence_length": _one(7)},
            "'sequence_length' must be in 0..2",
        ),
    ]
    return out


def triton_inputs(module, arrays: dict):
    tensors = []
    for name, arr in arrays.items():
        t = module.InferInput(name, list(arr.shape), _DT[arr.dtype])
        t.set_data_from_numpy(arr)
        tensors.append(t)
    return tensors
