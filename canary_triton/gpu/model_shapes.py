"""What the GPU throughput model reads of a checkpoint: :class:`ModelShapes`, every dimension from
its configs (and its tokenizer's prompt), with the parameter counts of the encoder and the LLM.

Library only: no torch or TensorRT import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest, section
from canary_triton.checkpoint.reader import checkpoint_tokenizer
from canary_triton.errors import CheckpointError

#: The key of the recorded ModelShapes in the throughput model's record (export.json ``throughput_model``).
SHAPES = "shapes"


@dataclass(frozen=True)
class ModelShapes:
    """What the model needs of a checkpoint, read from its configs (and its tokenizer's prompt)."""

    n_mels: int
    mel_frames_per_audio_second: float
    frames_per_audio_second: float  # encoder frames (= prompt-table rows) per second of audio
    max_table_rows: int  # rows of the longest clip's table (C.max_table_rows)
    encoder_layers: int
    encoder_dim: int
    encoder_heads: int
    encoder_params: int  # subsampling + conformer layers (FLOPs per frame ~ 2 x this)
    subsampling_channels: int
    projector_params: int
    llm_layers: int
    llm_hidden: int
    llm_heads: int
    llm_kv_heads: int
    llm_head_dim: int
    llm_non_embedding_params: int
    vocab_rows: int
    lm_head_params: int  # the logits' matrix (the tied embedding for Qwen3-1.7B)
    embedding_params: int
    text_prompt_tokens: int  # the ASR prompt's ids besides the audio placeholder
    max_position_embeddings: int

    @classmethod
    def from_configs(
        cls,
        salm_cfg: Mapping[str, Any],
        llm_cfg: Mapping[str, Any],
        text_prompt_tokens: int,
        mel: C.MelParams | None = None,
    ) -> "ModelShapes":
        """From NeMo's SALM config (``perception``) and the Qwen3 ``config.json``."""
        p = salm_cfg["perception"]
        enc = p["encoder"]
        mel = mel or C.MelParams.from_config(p["preprocessor"])
        sub = C.Subsampling.from_config(enc)
        d, layers = int(enc["d_model"]), int(enc["n_layers"])
        hidden = int(llm_cfg["hidden_size"])
        heads = int(llm_cfg["num_attention_heads"])
        kv_heads = int(llm_cfg.get("num_key_value_heads", heads))
        head_dim = int(llm_cfg.get("head_dim") or hidden // heads)
        vocab = int(llm_cfg["vocab_size"])
        tied = bool(llm_cfg.get("tie_word_embeddings", False))
        return cls(
            n_mels=mel.n_mels,
            mel_frames_per_audio_second=mel.sample_rate / mel.hop_length,
            frames_per_audio_second=mel.sample_rate / mel.hop_length / sub.factor,
            max_table_rows=C.max_table_rows(mel, sub),
            encoder_layers=layers,
            encoder_dim=d,
            encoder_heads=int(enc.get("n_heads", 8)),
            encoder_params=fastconformer_params(enc, mel.n_mels),
            subsampling_channels=int(enc.get("subsampling_conv_channels", 256)),
            projector_params=d * hidden + hidden,
            llm_layers=int(llm_cfg["num_hidden_layers"]),
            llm_hidden=hidden,
            llm_heads=heads,
            llm_kv_heads=kv_heads,
            llm_head_dim=head_dim,
            llm_non_embedding_params=qwen3_non_embedding_params(llm_cfg),
            vocab_rows=vocab,
            lm_head_params=vocab * hidden,
            embedding_params=vocab * hidden * (1 if tied else 2),
            text_prompt_tokens=int(text_prompt_tokens),
            max_position_embeddings=int(llm_cfg.get("max_position_embeddings", 0)),
        )

    @classmethod
    def from_checkpoint(cls, info) -> "ModelShapes":
        """From a :class:`canary_triton.checkpoint.reader.CheckpointInfo` (configs + tokenizer, no weights)."""
        prompt = checkpoint_tokenizer(info).asr_prompt_ids()
        return cls.from_configs(info.cfg, info.llm_cfg, len(prompt) - 1, info.mel)

    @classmethod
    def from_manifest(cls, manifest: ExportManifest) -> "ModelShapes":
        """The shapes a gpu export recorded (``export.json`` ``throughput_model``, :func:`record`'s ``shapes``)."""
        if manifest.throughput_model is None:
            raise CheckpointError("the export holds no throughput model: it is not a gpu export")
        return section(cls, manifest.throughput_model.get(SHAPES), f"throughput_model.{SHAPES}")

    def table_rows(self, seconds: float) -> int:
        """Prompt-table rows the LLM reads for a clip (its valid encoder frames)."""
        return int(round(seconds * self.frames_per_audio_second))


def conv_out(length: int, repeats: int) -> int:
    """``length`` after ``repeats`` stride-2 convolutions (NeMo's subsampling)."""
    for _ in range(repeats):
        length = (length + 2 - 3) // 2 + 1  # kernel 3, stride 2, padding 1 (C.num_encoder_frames)
    return length


def fastconformer_params(enc: Mapping[str, Any], n_mels: int) -> int:
    """Parameters of NeMo's ConformerEncoder from its config: the subsampling convolutions and
    their output linear, then per layer two feed-forwards, rel-pos attention (q/k/v/out with
    biases, linear_pos without, pos_bias_u/v), the convolution module and five layer norms."""
    sub = C.Subsampling.from_config(enc)
    d, layers = int(enc["d_model"]), int(enc["n_layers"])
    ff = d * int(enc.get("ff_expansion_factor", 4))
    c = int(enc.get("subsampling_conv_channels", 256))
    k = int(enc.get("conv_kernel_size", 31))
    if enc.get("subsampling", "dw_striding") == "dw_striding":
        convs = (c * 9 + c) + (sub.repeats - 1) * ((c * 9 + c) + (c * c + c))
    else:  # striding: full 3x3 convolutions
        convs = (c * 9 + c) + (sub.repeats - 1) * (c * c * 9 + c)
    pre = convs + c * conv_out(n_mels, sub.repeats) * d + d
    feed_forward = 2 * (d * ff + ff + ff * d + d)
    attention = 4 * (d * d + d) + d * d + 2 * d  # pos_bias_u, pos_bias_v: heads x d_k = d each
    conv = (d * 2 * d + 2 * d) + (d * k + d) + 2 * d + (d * d + d)
    norms = 5 * 2 * d
    return pre + layers * (feed_forward + attention + conv + norms)


def qwen3_non_embedding_params(llm_cfg: Mapping[str, Any]) -> int:
    """Qwen3 decoder parameters besides the token embedding and the logits' matrix."""
    h = int(llm_cfg["hidden_size"])
    heads = int(llm_cfg["num_attention_heads"])
    kv = int(llm_cfg.get("num_key_value_heads", heads))
    hd = int(llm_cfg.get("head_dim") or h // heads)
    inter = int(llm_cfg["intermediate_size"])
    bias = bool(llm_cfg.get("attention_bias", False))
    attention = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 2 * hd  # q, k, v, o; q_norm, k_norm
    if bias:
        attention += heads * hd + 2 * kv * hd + h
    return int(llm_cfg["num_hidden_layers"]) * (attention + 3 * h * inter + 2 * h) + h
