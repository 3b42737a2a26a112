"""ONNX encoder/projector -> TensorRT engine (GPU profile), with the ``tensorrt`` Python API.

NOT RUN IN CI: TensorRT cannot be installed on the CPU machines this project is tested on (PyPI
holds only stub packages). This code runs inside NVIDIA's Triton+TRT-LLM container, where
``tensorrt`` is importable. Elsewhere :func:`require_tensorrt` fails at once and says where it runs.

- Optimisation profile over batch and mel frames, up to the 40 s limit by default (4001 frames).
- Precision: fp32, or fp16/bf16 with the attention softmax kept in fp32. On TensorRT >= 10.12
  (and 11, strong typing only) mixed precision is put into the ONNX graph by ModelOpt AutoCast
  with ``Softmax`` excluded, and the network is built strongly typed. On older TensorRT 10 the
  weakly typed flags are used with every softmax layer pinned to fp32.
- A timing cache is read and written beside the engines; an engine is named for the GPU's
  compute capability (``encoder.sm90.plan``), since a plan only runs on the GPU/TensorRT it was
  built with. Triton picks the right one through ``cc_model_filenames``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError

# TensorRT, ModelOpt, onnx and torch are imported by the steps that build on a GPU: the options,
# build settings and a --dry-run work on machines without them.

WHERE_IT_RUNS = (
    "the gpu profile builds TensorRT engines inside NVIDIA's Triton+TensorRT-LLM container "
    "(nvcr.io/nvidia/tritonserver:<release>-trtllm-python-py3, see Dockerfile.triton) on the GPU "
    "that will serve them; use --profile cpu on machines without one"
)

#: ``export --dry-run`` names the plans for this GPU architecture unless told another (H100/H200).
DEFAULT_GPU_ARCH = "sm90"


def require_tensorrt():
    try:
        import tensorrt as trt  # noqa: F401
    except Exception as e:  # ImportError, or the PyPI stub failing to fetch its wheel
        raise CanaryTritonError(f"TensorRT is not importable here ({type(e).__name__}: {e}); {WHERE_IT_RUNS}") from None
    return trt


@dataclass(frozen=True)
class EngineOptions:
    precision: str = "bf16"  # fp32 | fp16 | bf16
    max_batch: int = 16
    opt_batch: int = 8
    max_audio_seconds: float = C.MAX_AUDIO_SECONDS
    opt_audio_seconds: float = 10.0
    min_mel_frames: int = 1
    workspace_gib: float = 4.0

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {self.precision!r}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= opt_batch ({self.opt_batch}) <= max_batch ({self.max_batch})")
        if not 0 < self.opt_audio_seconds <= self.max_audio_seconds:
            raise ValueError("need 0 < opt_audio_seconds <= max_audio_seconds")


def gpu_arch_tag() -> str:
    """``sm90`` for an H100, ``sm80`` for an A100, ``sm100`` for a B200 (the GPU present)."""
    import torch

    if not torch.cuda.is_available():
        raise CanaryTritonError(f"no CUDA GPU is visible; {WHERE_IT_RUNS}")
    major, minor = torch.cuda.get_device_capability()
    return f"sm{major}{minor}"


#: Graphs over protobuf's 2 GB limit (the real encoder's fp32 ONNX is ~3.1 GB) must be written with
#: their weights in a side file; TensorRT's parse_from_file reads it from beside the .onnx.
EXTERNAL_DATA_SUFFIX = ".data"


def length_nodes(graph, inputs: Sequence[str] = (C.MEL_LENGTH.name,)) -> list[str]:
    """Names of the nodes of ``graph`` (an ``onnx.GraphProto``) that compute from ``inputs`` alone.

    A node is on the length path when every input it reads is one of ``inputs``, an initializer, a
    constant (a ``Constant`` node's output, or a node's computed from constants only), or the output
    of a node on the length path; and at least one of them derives from ``inputs``. The encoder's
    ``mel_length -> Cast -> Add/Sub/Div -> Floor ...`` chain (NeMo's ``calc_length``, then the
    masks' lengths) is; nothing that reads ``mel`` (its data or its ``Shape``) is. A node holding
    a subgraph (If, Loop, Scan) may read outer tensors unnamed in its inputs: it is left out.
    Returned in graph order.
    """
    derived = set(inputs)
    constant = {init.name for init in graph.initializer} | {""}  # "": an optional input left out
    found = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute):
            continue
        if not all(i in derived or i in constant for i in node.input):
            continue
        if any(i in derived for i in node.input):
            derived.update(node.output)
            found.append(node.name)
        else:
            constant.update(node.output)
    return found


def autocast_settings(precision: str, nodes_to_exclude: Sequence[str] = ()) -> dict[str, object]:
    """ModelOpt AutoCast arguments: fp16/bf16 with Softmax (attention probabilities) kept in fp32,
    and the nodes ``nodes_to_exclude`` (the encoder's :func:`length_nodes`) too.

    AutoCast 0.37 sends every float node not excluded to low precision: the length arithmetic
    from ``mel_length`` in bf16 gives NeMo's ``calc_length`` a wrong encoded length for 2,678 of
    the 4,001 mel lengths up to 40 s (4001 -> 500, not 501), and a strongly typed TensorRT network
    keeps that type. The names are passed as anchored regular expressions (AutoCast matches
    ``re.match(pattern, node.name)``).

    ``data_max=inf`` turns off AutoCast's activation-range rule, so it never runs its ONNX Runtime
    reference pass: that pass serialises the whole model in memory (over 2 GB for the real
    encoder) and cannot run the BF16-output projector on ORT's CPU provider. The weights' range
    rule (``init_max``, fp16's largest value) still applies.
    """
    settings: dict[str, object] = {
        "low_precision_type": "fp16" if precision == "fp16" else "bf16",
        "op_types_to_exclude": ["Softmax"],
        "keep_io_types": True,
        "data_max": float("inf"),
    }
    if nodes_to_exclude:
        settings["nodes_to_exclude"] = [f"{re.escape(name)}$" for name in nodes_to_exclude]
    return settings


def _autocast_onnx(onnx_path: Path, precision: str) -> Path:
    """ModelOpt AutoCast (:func:`autocast_settings`, the graph's :func:`length_nodes` kept in
    fp32), saved with external data (any size)."""
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    graph = onnx.load(str(onnx_path), load_external_data=False).graph  # the structure is enough
    keep = length_nodes(graph, [i.name for i in graph.input if i.name == C.MEL_LENGTH.name])
    unnamed = sum(1 for name in keep if not name)
    if unnamed:
        raise CanaryTritonError(f"{onnx_path}: {unnamed} node(s) on the mel_length path have no name to exclude")
    model = convert_to_mixed_precision(onnx_path=str(onnx_path), **autocast_settings(precision, keep))
    out = onnx_path.with_name(onnx_path.stem + f".{precision}.onnx")
    onnx.save(
        model,
        str(out),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=out.name + EXTERNAL_DATA_SUFFIX,
    )
    return out


def tensorrt_build_settings(
    onnx_path: str, plan_path: str, shapes: dict, opts: EngineOptions, timing_cache: str
) -> dict[str, object]:
    """One engine's build settings as JSON (what :func:`build_engine` does with them on TensorRT
    >= 10.12: AutoCast, then a strongly typed network with this profile)."""
    return {
        "onnx": onnx_path,
        "plan": plan_path,
        "timing_cache": timing_cache,
        "precision": opts.precision,
        "workspace_gib": opts.workspace_gib,
        "strongly_typed": True,
        "autocast": None
        if opts.precision == "fp32"
        # JSON has no infinity: "inf"
        else {k: "inf" if v == float("inf") else v for k, v in autocast_settings(opts.precision).items()},
        "profile": {
            name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, (lo, opt, hi) in shapes.items()
        },
    }


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    shapes: dict[str, tuple[tuple[int, ...], ...]],
    opts: EngineOptions,
    timing_cache: str | Path,
) -> Path:
    """Build one serialized engine. ``shapes`` maps each input to (min, opt, max) shapes."""
    trt = require_tensorrt()
    onnx_path, out_path, timing_cache = Path(onnx_path), Path(out_path), Path(timing_cache)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    minor = int(trt.__version__.split(".")[1])
    strongly_typed = major >= 11 or (major == 10 and minor >= 12)
    source = onnx_path
    if opts.precision != "fp32" and strongly_typed:
        source = _autocast_onnx(onnx_path, opts.precision)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CanaryTritonError(f"TensorRT could not parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_gib * (1 << 30)))
    if opts.precision != "fp32" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16 if opts.precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.SOFTMAX:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise CanaryTritonError(f"TensorRT failed to build an engine from {source} (see the log above)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(bytes(plan))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return out_path


Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def encoder_profiles(opts: EngineOptions, mel: C.MelParams, sub: C.Subsampling, encoder_dim: int) -> dict[str, Shapes]:
    """(min, opt, max) input shapes of the encoder and projector engines, from the audio limits.

    Mel frames for N samples are ``N // hop + 1`` (the centred STFT's columns); encoder frames
    follow the subsampling arithmetic of the contract.
    """
    max_mel = int(opts.max_audio_seconds * mel.sample_rate) // mel.hop_length + 1
    opt_mel = int(opts.opt_audio_seconds * mel.sample_rate) // mel.hop_length + 1
    max_enc = C.num_encoder_frames(max_mel, sub)
    opt_enc = C.num_encoder_frames(opt_mel, sub)
    b, ob, n = opts.max_batch, opts.opt_batch, mel.n_mels
    return {
        "encoder": {
            C.MEL.name: ((1, n, opts.min_mel_frames), (ob, n, opt_mel), (b, n, max_mel)),
            C.MEL_LENGTH.name: ((1,), (ob,), (b,)),
        },
        "projector": {C.ENCODED.name: ((1, 1, encoder_dim), (ob, opt_enc, encoder_dim), (b, max_enc, encoder_dim))},
    }


def build_encoder_engines(
    encoder_onnx: Path,
    projector_onnx: Path,
    out_dir: Path,
    encoder_dim: int,
    mel: C.MelParams,
    sub: C.Subsampling,
    opts: EngineOptions,
    arch: str | None = None,
) -> tuple[Path, Path]:
    """Engines for the encoder and the projector, named for the GPU they were built on."""
    arch = arch or gpu_arch_tag()
    shapes = encoder_profiles(opts, mel, sub, encoder_dim)
    cache = out_dir / f"timing.{arch}.cache"
    enc = build_engine(encoder_onnx, out_dir / f"encoder.{arch}.plan", shapes["encoder"], opts, cache)
    proj = build_engine(projector_onnx, out_dir / f"projector.{arch}.plan", shapes["projector"], opts, cache)
    return enc, proj
