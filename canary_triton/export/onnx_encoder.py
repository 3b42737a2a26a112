"""Encoder and projector to ONNX (legacy TorchScript exporter, opset 17); the sessions that run
them are in :mod:`canary_triton.runtime.onnx_session`.

- ``encoder.onnx``: ``mel`` [B, n_mels, T] fp32 + ``mel_length`` [B] int64 ->
  ``encoded`` [B, T', d_enc] + ``encoded_length`` [B] int64. Padding masks come from the lengths,
  so a clip's output does not depend on what it is batched with.
- ``projector.onnx``: ``encoded`` [B, T', d_enc] -> ``prompt_embedding_table`` [B, T', hidden].

Batch and time are dynamic. The export example is small so that NeMo traces the plain masked
subsampling path (its by-batch/by-channel splitting is chosen in Python at trace time), and the
positional table covers ``pos_emb_max_len`` encoder frames (5000, ~400 s), far beyond the 40 s limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from canary_triton.runtime.onnx_session import (
    ONNX_IN_MEL,
    ONNX_IN_MEL_LENGTH,
    ONNX_OUT_ENCODED,
    ONNX_OUT_ENCODED_LENGTH,
    ONNX_OUT_TABLE,
)

# NeMo (seconds to import), onnx and ONNX Runtime's quantizer are imported by the steps that use them.

OPSET = 17
ENCODER_ONNX = "encoder.onnx"
#: A graph over protobuf's 2 GB limit (the full-size encoder, 3.1 GB in fp32) keeps its weights
#: in this one file beside encoder.onnx (the exporter itself writes one file per tensor).
ENCODER_DATA = "encoder.onnx.data"
#: CPU profile, ``--cpu-encoder-precision int8``: the encoder's MatMuls quantized to int8 (weights
#: per output channel, activations per tensor at run time): ONNX Runtime's integer kernels (VNNI on
#: x86 CPUs that have it). Its weights go in one external-data file beside it, as the fp32 graph's.
ENCODER_INT8_ONNX = "encoder_int8.onnx"
PROJECTOR_ONNX = "projector.onnx"
PROJECTOR_BF16_ONNX = "projector_bf16.onnx"  # GPU profile: emits the BF16 prompt table


class EncoderForExport(nn.Module):
    """NeMo's FastConformer in export mode, output time-major: [B, T', d_enc]."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, mel: torch.Tensor, mel_length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded, encoded_length = self.encoder.forward_for_export(audio_signal=mel, length=mel_length)
        return encoded.transpose(1, 2), encoded_length


class ProjectorForExport(nn.Module):
    """The modality adapter (identity for Canary-Qwen) and the Linear d_enc -> hidden.

    ``out_dtype`` bfloat16 adds a final Cast: the TensorRT-LLM engine takes its prompt table in its
    own dtype, so the GPU projector emits BF16 directly.
    """

    def __init__(self, proj: nn.Module, out_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.proj = proj
        self.out_dtype = out_dtype

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.proj(encoded).to(self.out_dtype)


@dataclass(frozen=True)
class OnnxExport:
    encoder: Path
    projector: Path


def _example(n_mels: int, frames: int = 320) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(2, n_mels, frames, generator=g)
    return mel, torch.tensor([frames, frames - 77], dtype=torch.int64)


#: Each graph's inputs and outputs in argument / result order: name -> {axis: name} of its dynamic axes.
_ENCODER_IN = {ONNX_IN_MEL: {0: "batch", 2: "mel_frames"}, ONNX_IN_MEL_LENGTH: {0: "batch"}}
_ENCODER_OUT = {ONNX_OUT_ENCODED: {0: "batch", 1: "frames"}, ONNX_OUT_ENCODED_LENGTH: {0: "batch"}}
_PROJECTOR_IN = {ONNX_OUT_ENCODED: {0: "batch", 1: "frames"}}
_PROJECTOR_OUT = {ONNX_OUT_TABLE: {0: "batch", 1: "frames"}}


def to_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: str | Path,
    inputs: dict[str, dict[int, str]],
    outputs: dict[str, dict[int, str]],
) -> Path:
    """Trace ``module`` on ``example`` into ``path``: the one ``torch.onnx.export`` call of the
    project (legacy TorchScript exporter, opset :data:`OPSET`, constants folded).

    ``inputs`` / ``outputs``: tensor name -> {axis: name} of its dynamic axes, in the order of
    ``module``'s arguments / results (``{}``: every axis fixed). The caller picks the grad and
    NeMo type-check context (``torch.no_grad()``, ``typecheck.disable_checks()``).
    """
    torch.onnx.export(
        module,
        example,
        str(path),
        opset_version=OPSET,
        dynamo=False,
        input_names=list(inputs),
        output_names=list(outputs),
        dynamic_axes={name: axes for name, axes in {**inputs, **outputs}.items() if axes},
        do_constant_folding=True,
    )
    return Path(path)


def export_onnx(model, out_dir: str | Path, bf16_table: bool = False) -> OnnxExport:
    """Export ``model.perception``'s encoder and projector (``model`` is NeMo's SALM, eval).

    ``bf16_table`` also writes ``projector_bf16.onnx`` (same graph plus a Cast to BF16) for the
    GPU profile; ONNX Runtime's CPU provider does not run it, TensorRT does.
    """
    from nemo.collections.speechlm2.modules.perception import IdentityConnector
    from nemo.core.classes.common import typecheck

    perception = model.perception
    if not isinstance(perception.modality_adapter, IdentityConnector):
        raise ValueError(
            f"modality adapter {type(perception.modality_adapter).__name__} is not supported "
            "(Canary-Qwen uses IdentityConnector)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    enc = EncoderForExport(perception.encoder).eval()
    proj = ProjectorForExport(perception.proj).eval()
    mel, mel_len = _example(int(perception.encoder._feat_in))
    with torch.no_grad(), typecheck.disable_checks():
        encoded, _ = enc(mel, mel_len)
        to_onnx(enc, (mel, mel_len), out_dir / ENCODER_ONNX, _ENCODER_IN, _ENCODER_OUT)
        to_onnx(proj, (encoded,), out_dir / PROJECTOR_ONNX, _PROJECTOR_IN, _PROJECTOR_OUT)
        if bf16_table:
            bf16 = ProjectorForExport(perception.proj, torch.bfloat16).eval()
            to_onnx(bf16, (encoded,), out_dir / PROJECTOR_BF16_ONNX, _PROJECTOR_IN, _PROJECTOR_OUT)
    # The legacy exporter restores the wrappers' training flags on exit; keep everything in eval.
    model.eval()
    consolidate_external_data(out_dir / ENCODER_ONNX, ENCODER_DATA)
    return OnnxExport(out_dir / ENCODER_ONNX, out_dir / PROJECTOR_ONNX)


def quantize_encoder_int8(fp32_path: str | Path, out_path: str | Path | None = None) -> Path:
    """``encoder.onnx`` -> ``encoder_int8.onnx`` beside it (dynamic quantization of every MatMul:
    int8 weights per output channel, uint8 activations scaled per tensor at run time; the
    convolutions, norms and softmax stay fp32). The fp32 graph is left in place."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = Path(fp32_path)
    out_path = Path(out_path) if out_path is not None else fp32_path.with_name(ENCODER_INT8_ONNX)
    quantize_dynamic(
        str(fp32_path),
        str(out_path),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        use_external_data_format=fp32_path.with_name(ENCODER_DATA).is_file(),
    )
    consolidate_external_data(out_path, out_path.name + ".data")
    return out_path


def consolidate_external_data(path: Path, data_name: str) -> Path | None:
    """Rewrite a graph whose weights are in external files as ``path`` plus the one file
    ``data_name`` beside it (ONNX Runtime and TensorRT's parser read it relative to the graph);
    the loose files are removed. Returns the data file, or None for a self-contained graph."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, load_external_data_for_model

    path = Path(path)
    graph = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in _get_all_tensors(graph) for e in t.external_data if e.key == "location"}
    if not locations:
        return None
    if locations == {data_name}:
        return path.parent / data_name
    load_external_data_for_model(graph, str(path.parent))
    (path.parent / data_name).unlink(missing_ok=True)
    onnx.save_model(
        graph,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_name,
        size_threshold=1024,
    )
    del graph
    for loc in locations - {data_name}:
        (path.parent / loc).unlink(missing_ok=True)
    return path.parent / data_name
