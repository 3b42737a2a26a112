"""What the GPU backends check when they load a model, checked on a rendered repository (no GPU).

Each rule is one the pinned backends enforce at load or at the first request (see the audit in
the project's design notes): a ``tensorrtllm`` model needs ``tokenizer_dir``,
``xgrammar_tokenizer_info_path`` and ``guided_decoding_backend``, an absolute ``gpt_model_path``,
KV-cache reuse off where requests carry an audio prompt table; a ``tensorrt_plan`` model's
``max_batch_size`` may not exceed the plan's; the engines must hold the largest prompt table and
the largest bucketed mel tensor the preprocessor produces. :func:`load_time_problems` returns one
line per broken rule (empty: all hold); ``canary-triton export --dry-run`` output and a real gpu
export both pass it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from canary_triton import contract as C
from canary_triton.artifacts import ENGINE_BUILD, ExportManifest
from canary_triton.export.repository import REPOSITORY_DIR, RepositoryOptions

# tritonclient's protobuf types (the client extra) are imported by the checks that parse a config.

#: Parameters ``model_instance_state.cc`` reads with no default (no try/catch): missing, no load.
TRTLLM_REQUIRED_PARAMETERS = (
    "tokenizer_dir",
    "xgrammar_tokenizer_info_path",
    "guided_decoding_backend",
    "gpt_model_type",
    "gpt_model_path",
)
GPT_MODEL_TYPES = ("inflight_fused_batching", "inflight_batching", "V1")
#: Models whose requests carry an audio prompt table (KV reuse would reject them).
TABLE_MODELS = (C.LLM_MODEL,)
ENGINE_DTYPE_TO_TRITON = {"bfloat16": "TYPE_BF16", "float16": "TYPE_FP16"}


def parse_config(path: Path):
    """A ``config.pbtxt`` as Triton's ``ModelConfig`` protobuf (ValueError naming the file)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise ValueError(f"{path}: not a valid Triton ModelConfig: {e}") from None


def _params(cfg) -> dict[str, str]:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def load_time_problems(export_dir: str | Path) -> list[str]:
    """Every rule of the GPU backends that the repository in ``export_dir`` breaks (one line each)."""
    export_dir = Path(export_dir)
    manifest = ExportManifest.read(export_dir)
    problems: list[str] = []
    configs: dict[str, Any] = {}
    repo = export_dir / REPOSITORY_DIR
    for path in sorted(repo.glob("*/config.pbtxt")):
        try:
            configs[path.parent.name] = parse_config(path)
        except ValueError as e:
            problems.append(str(e))
    build_path = export_dir / (manifest.files.engine_build or ENGINE_BUILD)
    if not build_path.is_file():
        return problems + [f"{build_path} is missing: the engine build settings cannot be checked"]
    build = json.loads(build_path.read_text())
    rows = manifest.limits.max_table_rows
    mel = manifest.model.mel
    bucket_s = RepositoryOptions.recorded(manifest.options.repository).mel_bucket_s
    widest_mel = C.bucketed_columns(C.max_mel_columns(mel), C.mel_bucket_columns(bucket_s, mel), mel)
    for name, cfg in configs.items():
        if cfg.platform == "tensorrt_plan":
            part = build["tensorrt"].get(name)
            if part is None:
                problems.append(f"{name}: no engine build settings for this tensorrt_plan model")
                continue
            plan_batch = min(shape["max"][0] for shape in part["profile"].values())
            if cfg.max_batch_size > plan_batch:
                problems.append(
                    f"{name}: max_batch_size {cfg.max_batch_size} exceeds the plan's max batch {plan_batch} "
                    "(the tensorrt backend refuses to load it)"
                )
            for cc, filename in cfg.cc_model_filenames.items():
                if not (repo / name / "1" / filename).is_symlink() and not (repo / name / "1" / filename).is_file():
                    problems.append(f"{name}: cc_model_filenames {cc} -> {filename} is not in {repo / name / '1'}")
        elif cfg.backend == "tensorrtllm":
            params = _params(cfg)
            for key in TRTLLM_REQUIRED_PARAMETERS:
                if key not in params:
                    problems.append(f"{name}: parameter {key} is missing (the backend reads it without a default)")
            if params.get("gpt_model_type") not in GPT_MODEL_TYPES:
                problems.append(
                    f"{name}: gpt_model_type {params.get('gpt_model_type')!r} is not one of {GPT_MODEL_TYPES}"
                )
            engine_path = params.get("gpt_model_path", "")
            if not Path(engine_path).is_absolute():
                problems.append(
                    f"{name}: gpt_model_path {engine_path!r} is not absolute (the backend resolves it "
                    "against tritonserver's working directory)"
                )
            if name in TABLE_MODELS and params.get("enable_kv_cache_reuse") != "false":
                problems.append(
                    f'{name}: enable_kv_cache_reuse must be "false" (requests carry a prompt table '
                    "and no prompt_table_extra_ids)"
                )
            engine = next(
                (
                    e
                    for e in build["tensorrt_llm"].values()
                    if str((export_dir / e["engine_dir"]).resolve()) == engine_path
                ),
                None,
            )
            if engine is None:
                problems.append(f"{name}: gpt_model_path {engine_path} is not an engine in {build_path.name}")
                continue
            bc = engine["build_config"]
            per_request = bc["max_prompt_embedding_table_size"] // bc["max_batch_size"]
            if name in TABLE_MODELS and per_request < rows:
                problems.append(
                    f"{name}: the engine holds {per_request} prompt-table rows per request "
                    f"(max_prompt_embedding_table_size / max_batch_size); the longest clip needs {rows}"
                )
            if name in TABLE_MODELS and bc["max_input_len"] < len(manifest.asr_prompt_ids) - 1 + rows:
                problems.append(
                    f"{name}: max_input_len {bc['max_input_len']} is shorter than the longest ASR prompt "
                    f"({len(manifest.asr_prompt_ids) - 1 + rows} ids)"
                )
            table = next((t for t in cfg.input if t.name == C.PROMPT_EMBEDDING_TABLE.name), None)
            want = ENGINE_DTYPE_TO_TRITON[engine["dtype"]]
            if table is not None and table.data_type != _dtype_enum(want):
                problems.append(f"{name}: prompt_embedding_table is not {want}, the engine's dtype")
    enc = build["tensorrt"].get(C.ENCODER_MODEL)
    if enc is not None:
        top = enc["profile"][C.MEL.name]["max"][2]
        if top < widest_mel:
            problems.append(
                f"encoder: the plan takes at most {top} mel columns; the preprocessor's widest bucket is {widest_mel}"
            )
    proj = build["tensorrt"].get(C.PROJECTOR_MODEL)
    if proj is not None:
        top = proj["profile"][C.ENCODED.name]["max"][1]
        if top < rows:
            problems.append(f"projector: the plan takes at most {top} encoder frames; the longest clip gives {rows}")
    llm = configs.get(C.LLM_MODEL)
    if llm is not None and not llm.model_transaction_policy.decoupled:
        problems.append(f"{C.LLM_MODEL}: must be decoupled (as TensorRT-LLM's decoupled_mode)")
    return problems


def _dtype_enum(name: str) -> int:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Value(name)
