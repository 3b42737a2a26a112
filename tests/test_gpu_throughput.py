"""The GPU throughput model (canary_triton/gpu/throughput.py): the defaults and predictions it
derives on the real Canary-Qwen-2.5B shapes (tests/test_gpu_model_shapes.py), the docs page's tables
against the code, and the gpu profile's defaults applied by `canary-triton export`. A MODEL, not a
measurement: no figure here was measured on a GPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from canary_triton.artifacts import ENGINE_BUILD, ExportManifest
from canary_triton.checkpoint.reader import inspect_checkpoint
from canary_triton.cli import export_options
from canary_triton.export.gpu_checks import load_time_problems, parse_config
from canary_triton.export.repository import REPOSITORY_DIR, RepositoryOptions
from canary_triton.export.tensorrt_engine import EngineOptions
from canary_triton.export.trtllm_engine import LlmEngineOptions
from canary_triton.gpu import throughput as gt
from tests.test_gpu_dry_run import _k8s_export_args, full_size_checkpoint

from .conftest import cli_in_process
from .test_gpu_model_shapes import real_shapes

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / gt.DOC


@pytest.mark.parametrize("gpu", sorted(gt.GPUS))
def test_derived_defaults_follow_from_the_model(gpu):
    s, a, spec = real_shapes(), gt.Assumptions(), gt.GPUS[gpu]
    d = gt.derive_gpu_defaults(s, spec, a)
    p = gt.predict(s, spec, a, d)
    assert d.encoder_opt_batch == 16 and d.encoder_max_batch == 64  # 2048 rows / 125 frames per 10 s clip
    assert d.max_inflight == d.llm_max_batch and d.llm_max_batch % a.llm_batch_step == 0
    assert p.target_reachable and p.rtfx_upper_bound >= a.target_rtfx
    assert d.llm_max_batch >= p.in_flight_at_target > d.llm_max_batch - a.llm_batch_step  # Little's law, rounded up
    assert p.kv_requests_typical >= d.llm_max_batch  # the worst-case KV pool holds a full batch of typical clips
    assert d.max_num_tokens >= gt.max_input_len(s) + d.llm_max_batch
    assert 0 < d.kv_cache_free_gpu_mem_fraction <= 0.5 and d.encoder_instances == 2
    assert p.encoder_share + p.prefill_share + p.decode_share == pytest.approx(1.0)
    assert p.decode_tokens_per_s > p.decode_tokens_per_s_needed


def test_h200_bandwidth_helps_decode_only():
    s, a = real_shapes(), gt.Assumptions()
    h100, h200 = (gt.predict(s, g, a, gt.derive_gpu_defaults(s, g, a)) for g in (gt.H100_SXM, gt.H200))
    assert h200.encoder_gflop_per_audio_s == h100.encoder_gflop_per_audio_s
    assert h200.iteration_ms_at_target < h100.iteration_ms_at_target
    assert h200.in_flight_at_target < h100.in_flight_at_target


def test_an_unreachable_target_sizes_the_batch_by_memory():
    s, spec = real_shapes(), gt.GPUS["h100"]
    a = gt.Assumptions(target_rtfx=50_000)
    d = gt.derive_gpu_defaults(s, spec, a)
    p = gt.predict(s, spec, a, d)
    assert not p.target_reachable and p.in_flight_at_target is None and p.iteration_ms_at_target is None
    assert p.kv_requests_typical >= d.llm_max_batch > p.kv_requests_typical - a.llm_batch_step
    assert "not reachable" in gt.predictions_table(s, a)


def _doc_block(name: str) -> str:
    text = DOC.read_text()
    m = re.search(rf"<!-- {name}: generated.*?-->\n(.*?)<!-- end {name} -->", text, re.S)
    assert m, f"{DOC} has no generated {name} block"
    return m.group(1)


def test_the_docs_tables_are_the_codes():
    """docs/gpu-throughput-model.md's defaults and predictions tables, for the real shapes, are
    exactly what the code computes (regenerate them with `python -m canary_triton.gpu.throughput`)."""
    s = real_shapes()
    assert _doc_block("defaults") == gt.defaults_table(s)
    assert _doc_block("predictions") == gt.predictions_table(s)


def test_importing_the_model_imports_neither_torch_nor_tensorrt():
    code = (
        "import sys, canary_triton.gpu.throughput as g; g.derive_gpu_defaults; "
        "print(sorted(m for m in ('torch', 'tensorrt', 'tensorrt_llm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_command_prints_the_tables_for_a_checkpoint(tiny_trained_dir, capsys):
    assert gt.main([str(tiny_trained_dir)]) == 0
    out = capsys.readouterr().out
    s = gt.ModelShapes.from_checkpoint(inspect_checkpoint(tiny_trained_dir))
    assert gt.defaults_table(s) in out and gt.predictions_table(s) in out


# ------------------------------------------------------------------------------------------
# Applied: `canary-triton export --profile gpu` takes its defaults from the model
# ------------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    """``canary-triton export *args``, in this process (see conftest.cli_in_process: the same exit
    code and stderr, an unexpected exception fails the test), not a fresh interpreter importing
    torch and NeMo again."""
    return cli_in_process("export", *args)


@pytest.fixture(scope="module")
def dry_sized(tiny_trained_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sized") / "gpu"
    r = _cli(str(tiny_trained_dir), "-o", str(out), "--profile", "gpu", "--dry-run", "--llm-max-batch", "48")
    assert r.returncode == 0, r.stderr
    return out


def test_gpu_dry_run_applies_the_models_defaults_and_records_them(dry_sized, tiny_trained_dir):
    manifest = ExportManifest.read(dry_sized)
    tm = manifest.throughput_model
    d = gt.derive_gpu_defaults(gt.ModelShapes.from_checkpoint(inspect_checkpoint(tiny_trained_dir)), gt.H100_SXM)
    assert tm["gpu"] == "h100" and tm["note"] == gt.NOTE and tm["derived_defaults"] == asdict(d)
    # every default but the explicit --llm-max-batch came from the model, and says so; the BLS
    # max_inflight follows the LLM's max batch
    used = replace(d, llm_max_batch=48, max_inflight=48)
    assert tm["from_model"] == {flag: getattr(used, k) for k, flag in gt.EXPORT_FLAGS.items() if k != "llm_max_batch"}
    assert tm["used"] == asdict(used)
    assert tm["predictions"] == asdict(
        gt.predict(gt.ModelShapes.from_manifest(manifest), gt.H100_SXM, gt.Assumptions(), used)
    )
    build = json.loads((dry_sized / ENGINE_BUILD).read_text())
    assert build["throughput_model"] == tm  # the reviewable plan shows them too
    bc = build["tensorrt_llm"]["merged"]["build_config"]
    assert bc["max_batch_size"] == 48 and bc["max_num_tokens"] == d.max_num_tokens
    assert build["tensorrt"]["encoder"]["profile"]["mel"]["opt"][0] == d.encoder_opt_batch
    assert build["tensorrt"]["encoder"]["profile"]["mel"]["max"][0] == d.encoder_max_batch
    repo = dry_sized / REPOSITORY_DIR
    enc = parse_config(repo / "encoder" / "config.pbtxt")
    assert enc.max_batch_size == d.encoder_max_batch and enc.instance_group[0].count == d.encoder_instances
    assert parse_config(repo / "preprocessor" / "config.pbtxt").instance_group[0].count == d.encoder_instances
    llm = {k: v.string_value for k, v in parse_config(repo / "llm" / "config.pbtxt").parameters.items()}
    assert float(llm["kv_cache_free_gpu_mem_fraction"]) == d.kv_cache_free_gpu_mem_fraction
    unary = {k: v.string_value for k, v in parse_config(repo / "llm_unary" / "config.pbtxt").parameters.items()}
    assert unary["max_inflight"] == "48"
    assert load_time_problems(dry_sized) == []


def test_explicit_options_win_and_h200_has_its_own_sizing(tiny_trained_dir, tmp_path):
    explicit = export_options(
        [
            str(tiny_trained_dir),
            "-o",
            str(tmp_path),
            "--profile",
            "gpu",
            "--max-batch",
            "32",
            "--opt-batch",
            "8",
            "--llm-max-batch",
            "64",
            "--instances",
            "3",
            "--kv-cache-fraction",
            "0.4",
            "--max-num-tokens",
            "4096",
            "--max-inflight",
            "100",
            "--gpu-model",
            "h200",
        ]
    )
    assert explicit.sized_by_model == () and explicit.gpu_model == "h200"
    assert (explicit.engine.max_batch, explicit.engine.opt_batch, explicit.llm_engine.max_batch) == (32, 8, 64)
    assert explicit.repository.max_batch == 32 and explicit.repository.encoder_instances == 3
    assert explicit.repository.kv_cache_free_gpu_mem_fraction == 0.4 and explicit.repository.max_inflight == 100
    assert explicit.llm_engine.max_num_tokens == 4096
    sized = export_options([str(tiny_trained_dir), "-o", str(tmp_path), "--profile", "gpu", "--gpu-model", "h200"])
    d = gt.derive_gpu_defaults(gt.ModelShapes.from_checkpoint(inspect_checkpoint(tiny_trained_dir)), gt.H200)
    assert sized.sized_by_model == tuple(gt.EXPORT_FLAGS) and sized.llm_engine.max_batch == d.llm_max_batch


def test_the_cpu_profile_keeps_its_defaults(tiny_trained_dir, tmp_path):
    o = export_options([str(tiny_trained_dir), "-o", str(tmp_path)])
    assert o.sized_by_model == ()
    assert (o.engine.max_batch, o.engine.opt_batch) == (EngineOptions.max_batch, EngineOptions.opt_batch) == (16, 8)
    r = o.repository
    assert (r.max_batch, r.llm_max_batch, r.encoder_instances, r.preprocessor_instances, r.max_inflight) == (
        16,
        RepositoryOptions.llm_max_batch,
        1,
        1,
        RepositoryOptions.max_inflight,
    )
    assert o.llm_engine.max_batch == r.llm_max_batch and o.llm_engine.max_num_tokens == LlmEngineOptions.max_num_tokens


@pytest.mark.parametrize(
    "args,message",
    [
        (["--max-num-tokens", "100"], "--max-num-tokens 100 is below the longest prompt"),
        (["--kv-cache-fraction", "1.5"], "--kv-cache-fraction: must be in (0, 1)"),
        (["--max-inflight", "0"], "--max-inflight: must be >= 1"),
        (["--gpu-model", "a100"], "--gpu-model: invalid choice"),
    ],
)
def test_bad_sizing_options_are_one_line_errors(tiny_trained_dir, tmp_path, args, message):
    r = _cli(str(tiny_trained_dir), "-o", str(tmp_path / "o"), "--profile", "gpu", "--dry-run", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_the_k8s_deployment_leaves_the_sizing_to_the_model():
    """deploy/k8s once passed --max-batch 64 --opt-batch 32 --llm-max-batch 64 by hand; the gpu
    profile's defaults now come from the model, so it passes none of the sized options."""
    args = _k8s_export_args()
    assert args and not set(args) & set(gt.EXPORT_FLAGS.values()), args


def test_a_full_size_dry_run_with_the_models_defaults_loads(tiny_trained_dir, tmp_path):
    """Canary-Qwen-2.5B's configs (no weights): `export --profile gpu --dry-run` with every sized
    option from the model renders a repository that passes the backends' load-time checks."""
    ckpt = full_size_checkpoint(tiny_trained_dir, tmp_path / "ckpt")
    r = _cli(str(ckpt), "-o", str(tmp_path / "gpu"), "--profile", "gpu", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert load_time_problems(tmp_path / "gpu") == []
    shapes = gt.ModelShapes.from_checkpoint(inspect_checkpoint(ckpt))  # the tiny tokenizer's prompt: 20 text ids
    d = gt.derive_gpu_defaults(shapes, gt.H100_SXM)
    assert d.llm_max_batch > 64 and d.encoder_max_batch == 64  # sized for the goal, not today's 16
    build = json.loads((tmp_path / "gpu" / ENGINE_BUILD).read_text())
    bc = build["tensorrt_llm"]["merged"]["build_config"]
    assert (bc["max_batch_size"], bc["max_num_tokens"]) == (d.llm_max_batch, d.max_num_tokens)
    assert (
        bc["max_prompt_embedding_table_size"] == d.llm_max_batch * 501 and bc["max_num_tokens"] >= bc["max_input_len"]
    )
    assert build["throughput_model"]["predictions"] == asdict(gt.predict(shapes, gt.H100_SXM, gt.Assumptions(), d))
