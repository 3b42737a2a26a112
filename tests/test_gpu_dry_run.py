"""``canary-triton export --profile gpu --dry-run``: the GPU repository rendered without TensorRT,
checked against what the pinned backends require at load (canary_triton/export/gpu_checks.py), for the bundled
tiny-trained checkpoint and for a full-size Canary-Qwen-2.5B description (config only, no weights).
Each of the first-start failures found by reading the backends' source has a test here that the
old rendering fails."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from canary_triton import contract as C
from canary_triton.artifacts import ENGINE_BUILD, EXPORT_MANIFEST, ExportManifest
from canary_triton.export.gpu_checks import load_time_problems, parse_config
from canary_triton.export.options import ExportOptions
from canary_triton.export.pipeline import plan_gpu_export
from canary_triton.export.repository import REPOSITORY_DIR, RepositoryOptions
from canary_triton.export.tensorrt_engine import EngineOptions
from canary_triton.export.trtllm_engine import LlmEngineOptions

from .conftest import cli_in_process

ROOT = Path(__file__).resolve().parent.parent
GPU = ExportOptions(profile="gpu", dry_run=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return cli_in_process("export", *args)


@pytest.fixture(scope="module")
def dry_trained(tiny_trained_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dry") / "gpu"
    r = _cli(str(tiny_trained_dir), "-o", str(out), "--profile", "gpu", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dry_run"] is True
    return out


def full_size_checkpoint(tiny: Path, out: Path) -> Path:
    """Canary-Qwen-2.5B's dimensions (FastConformer d_model 1024 x 32 layers, Qwen3-1.7B hidden
    2048, 151936 vocabulary rows) in the tiny checkpoint's layout, without weights: the dry run
    reads configs and the tokenizer only."""
    out.mkdir(parents=True)
    cfg = json.loads((tiny / "config.json").read_text())
    enc = cfg["perception"]["encoder"]
    enc.update(d_model=1024, n_layers=32, n_heads=8, subsampling_conv_channels=256)
    cfg["perception"]["modality_adapter"]["d_model"] = 1024
    cfg["perception"]["output_dim"] = 2048
    cfg["lora"].update(r=128, lora_alpha=256)
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "model.safetensors").write_bytes(b"")  # never opened by the dry run
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tiny / name, out / name)
    (out / "llm_backbone").mkdir()
    llm = json.loads((tiny / "llm_backbone" / "config.json").read_text())
    llm.update(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
    )
    (out / "llm_backbone" / "config.json").write_text(json.dumps(llm))
    return out


@pytest.fixture(scope="module")
def dry_full(tiny_trained_dir, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("full")
    ckpt = full_size_checkpoint(tiny_trained_dir, base / "ckpt")
    opts = ExportOptions(
        profile="gpu",
        dry_run=True,
        engine=EngineOptions(max_batch=64, opt_batch=32),
        llm_engine=LlmEngineOptions(max_batch=64),
        repository=RepositoryOptions(max_batch=64),
    )
    plan_gpu_export(ckpt, base / "gpu", opts)
    return base / "gpu"


@pytest.mark.parametrize("which", ["dry_trained", "dry_full"])
def test_dry_run_repository_passes_every_load_time_check(which, request):
    out = request.getfixturevalue(which)
    assert load_time_problems(out) == []
    manifest = ExportManifest.read(out)
    assert manifest.dry_run is True and manifest.profile == "gpu"
    names = {p.parent.name for p in (out / REPOSITORY_DIR).glob("*/config.pbtxt")}
    assert names == set(C.ALL_MODELS)
    assert not (out / "engines").exists() and not (out / "trtllm").exists()  # nothing was built


def test_dry_run_writes_nothing_but_the_plan(dry_trained):
    assert sorted(p.name for p in dry_trained.iterdir()) == [ENGINE_BUILD, EXPORT_MANIFEST, REPOSITORY_DIR]


def test_full_size_engine_build_settings(dry_full):
    build = json.loads((dry_full / ENGINE_BUILD).read_text())
    merged = build["tensorrt_llm"]["merged"]["build_config"]
    # 40 s -> 4001 mel columns -> 501 table rows (the TensorRT encoder is not trimmed), 64 per batch.
    assert merged["max_prompt_embedding_table_size"] == 64 * 501
    assert merged["max_batch_size"] == 64 and merged["strongly_typed"] is True
    enc = build["tensorrt"]["encoder"]
    assert enc["profile"]["mel"]["max"] == [64, 128, 4001] and enc["autocast"]["data_max"] == "inf"
    assert build["tensorrt"]["projector"]["profile"]["encoded"]["max"] == [64, 501, 1024]
    cmd = build["tensorrt_llm"]["base"]["equivalent_command"]
    assert cmd[0] == "trtllm-build" and "--max_prompt_embedding_table_size" in cmd
    manifest = ExportManifest.read(dry_full)
    assert manifest.model.encoder_dim == 1024 and manifest.model.llm_hidden == 2048
    assert manifest.limits.max_table_rows == 501 and manifest.limits.max_audio_frames == 500
    assert "TYPE_BF16" in (dry_full / REPOSITORY_DIR / C.LLM_MODEL / "config.pbtxt").read_text()


def test_tensorrtllm_configs_as_the_backend_reads_them(dry_trained):
    repo = dry_trained / REPOSITORY_DIR
    llm = {k: v.string_value for k, v in parse_config(repo / C.LLM_MODEL / "config.pbtxt").parameters.items()}
    base = {k: v.string_value for k, v in parse_config(repo / C.LLM_BASE_MODEL / "config.pbtxt").parameters.items()}
    for key in ("tokenizer_dir", "xgrammar_tokenizer_info_path", "guided_decoding_backend"):
        assert key in llm and key in base
    assert llm["gpt_model_path"] == str((dry_trained / "trtllm" / "merged").resolve())
    assert base["gpt_model_path"] == str((dry_trained / "trtllm" / "base").resolve())
    assert llm["enable_kv_cache_reuse"] == "false" and base["enable_kv_cache_reuse"] == "true"
    text = (repo / C.LLM_MODEL / "config.pbtxt").read_text()
    assert re.search(r"^# .*prompt_table_extra_ids", text, re.M)  # says why, in the config itself
    stop = next(t for t in parse_config(repo / C.LLM_MODEL / "config.pbtxt").input if t.name == C.STOP.name)
    assert stop.optional and list(stop.reshape.shape) == []


@pytest.mark.parametrize(
    "model,pattern,replacement,message",
    [
        (C.LLM_MODEL, r'parameters \{ key: "guided_decoding_backend".*\n', "", "guided_decoding_backend is missing"),
        (C.LLM_BASE_MODEL, r'parameters \{ key: "tokenizer_dir".*\n', "", "tokenizer_dir is missing"),
        (
            C.LLM_MODEL,
            r'(key: "gpt_model_path" value: \{ string_value: ")[^"]*',
            r"\1../../trtllm/merged",
            "is not absolute",
        ),
        (C.LLM_MODEL, r'parameters \{ key: "enable_kv_cache_reuse".*\n', "", "enable_kv_cache_reuse must be"),
        (C.ENCODER_MODEL, r"max_batch_size: \d+", "max_batch_size: 4096", "exceeds the plan's max batch"),
        (C.PROJECTOR_MODEL, r"max_batch_size: \d+", "max_batch_size: ${triton_max_batch_size}", "not a valid Triton"),
    ],
)
def test_the_checks_catch_each_first_start_failure(dry_trained, tmp_path, model, pattern, replacement, message):
    """The renderings before the fix (parameters missing, a relative engine path, reuse unset, the
    k8s batch mismatch, a placeholder left unfilled) each fail the check, naming the model."""
    out = tmp_path / "broken"
    shutil.copytree(dry_trained, out, symlinks=True)
    cfg = out / REPOSITORY_DIR / model / "config.pbtxt"
    text, n = re.subn(pattern, replacement, cfg.read_text())
    assert n == 1
    cfg.write_text(text)
    problems = load_time_problems(out)
    assert any(message in p for p in problems), problems


def test_prompt_table_sizing_is_checked(tiny_trained_dir, tmp_path):
    out = tmp_path / "small-table"
    plan_gpu_export(tiny_trained_dir, out, GPU)
    build = json.loads((out / ENGINE_BUILD).read_text())
    bc = build["tensorrt_llm"]["merged"]["build_config"]
    bc["max_prompt_embedding_table_size"] = bc["max_batch_size"] * 500  # the old sizing: 40 s gives 501 rows
    (out / ENGINE_BUILD).write_text(json.dumps(build))
    assert any("holds 500 prompt-table rows per request" in p and "needs 501" in p for p in load_time_problems(out))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dry-run"], "--dry-run renders the gpu profile only"),
        (["--dry-run", "--profile", "cpu"], "--dry-run renders the gpu profile only"),
        (
            ["--profile", "gpu", "--dry-run", "--max-batch", "16", "--triton-max-batch", "64"],
            "--triton-max-batch 64 exceeds the encoder engines' --max-batch 16",
        ),
        (["--profile", "gpu", "--dry-run", "--gpu-arch", "hopper"], "--gpu-arch must look like sm80"),
        (["--mel-bucket-seconds", "0"], "--mel-bucket-seconds: must be in (0, 40] seconds"),
        (["--mel-bucket-seconds", "41"], "--mel-bucket-seconds: must be in (0, 40] seconds"),
        (["--weight-quant", "fp8"], "--weight-quant: weight_quant fp8 is not supported: it needs ModelOpt"),
    ],
)
def test_bad_export_options_are_one_line_errors(tiny_trained_dir, tmp_path, args, message):
    r = _cli(str(tiny_trained_dir), "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].count("error:") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def _k8s_export_args() -> list[str]:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text()))
    (container,) = [c for c in docs[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "triton"]
    return {e["name"]: e.get("value") for e in container["env"]}["CANARY_EXPORT_ARGS"].split()


def test_the_k8s_export_arguments_render_a_loadable_repository(tiny_trained_dir, tmp_path):
    """The deployment's CANARY_EXPORT_ARGS, as the GPU entrypoint passes them (it once asked for
    Triton max batch 64 over plans built for 16)."""
    args = _k8s_export_args()
    r = _cli(str(tiny_trained_dir), "-o", str(tmp_path / "o"), "--profile", "gpu", "--dry-run", *args)
    assert r.returncode == 0, r.stderr
    assert load_time_problems(tmp_path / "o") == []
    enc = parse_config(tmp_path / "o" / REPOSITORY_DIR / C.ENCODER_MODEL / "config.pbtxt")
    build = json.loads((tmp_path / "o" / ENGINE_BUILD).read_text())
    assert enc.max_batch_size == build["tensorrt"]["encoder"]["profile"]["mel"]["max"][0] > 16
