"""``canary-triton export --profile cpu`` end to end, and the gpu profile's fail-fast on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from canary_triton.artifacts import ExportManifest
from canary_triton.bundled import DEMO_HELDOUT
from canary_triton.checkpoint.reader import inspect_checkpoint
from canary_triton.checkpoint.tokenizer import load_tokenizer
from canary_triton.client import CanaryClient
from canary_triton.errors import CanaryTritonError
from canary_triton.export.lora import PEFT_PREFIX, export_llm
from canary_triton.export.parity import PARITY_REPORT, PARITY_TABLE
from canary_triton.export.pipeline import ExportOptions, check_audio_limit, export_checkpoint, llm_max_output_len
from canary_triton.export.trtllm_engine import LlmEngineOptions
from canary_triton.frontend.features import FB_KEY, WINDOW_KEY, load_front_end
from canary_triton.runtime.onnx_session import OnnxEncoderProjector

from .conftest import LONG_GENERATION_TOKENS, TRANSFORMERS_4_57_TOKENIZER_CLASSES, cli_in_process
from .test_checkpoint_reader import _bare_checkpoint, _cache_files, _qwen3_folder, hub_cache_with


@pytest.fixture(scope="module")
def exported(exported_random):
    return exported_random, ExportManifest.read(exported_random)


def test_manifest_and_parity(exported, oracle_random):
    out, manifest = exported
    assert manifest.parity_passed is True and (out / "model_repository" / "canary_qwen" / "config.pbtxt").is_file()
    report = json.loads((out / PARITY_REPORT).read_text())
    assert report["passed"] is True
    rows = report["rows"]
    # Every probe length, alone and batched, for each perception stage, within 1e-3 abs / 1e-4 rel.
    for stage in ("mel", "encoder", "projector"):
        for mode in ("single", "batched"):
            got = {r["seconds"] for r in rows if r["stage"] == stage and r["mode"] == mode}
            assert got == {0.5, 1.0, 7.3, 20.0, 40.0}, (stage, mode, got)
    for r in rows:
        assert r["lengths_equal"] and r["max_abs"] <= 1e-3 and r["rel"] <= 1e-4, r
    # fp32 LLM parity: merged vs NeMo with the adapter, base vs NeMo with it disabled.
    assert {r["stage"] for r in rows if r["stage"].startswith("llm")} == {"llm_merged_logits", "llm_base_logits"}
    assert all(r["max_abs"] <= 1e-4 for r in rows if r["stage"].startswith("llm"))
    table = (out / PARITY_TABLE).read_text()
    assert table.startswith("| stage | clip (s) | mode |") and "Passed: True" in table
    assert manifest.special_ids == oracle_random.special_ids
    assert manifest.model.lora_scale == 3.0
    assert manifest.limits.max_audio_frames == 500
    files = manifest.files
    for path in (files.encoder_onnx, files.projector_onnx, files.llm_merged, files.llm_base):
        assert (out / path).exists()


def test_front_end_constants_are_bit_exact(exported, tiny_random_dir):
    out, _ = exported
    with (
        safe_open(str(tiny_random_dir / "model.safetensors"), "pt") as src,
        safe_open(str(out / "frontend" / "mel.safetensors"), "pt") as dst,
    ):
        for key in (FB_KEY, WINDOW_KEY):
            a, b = src.get_tensor(key), dst.get_tensor(key)
            assert a.dtype == b.dtype and torch.equal(a, b)
    fe = load_front_end(out / "frontend")
    assert fe.params.n_mels == 128 and fe.params.hop_length == 160


def test_gpu_profile_fails_at_once_without_tensorrt(tiny_random_dir, tmp_path):
    r = cli_in_process("export", str(tiny_random_dir), "-o", str(tmp_path / "o"), "--profile", "gpu")
    assert r.returncode == 2
    assert "TensorRT is not importable here" in r.stderr and "Triton+TensorRT-LLM container" in r.stderr
    assert not (tmp_path / "o").exists()  # failed before doing any work


@pytest.mark.parametrize(
    "args,message",
    [
        (["--max-new-tokens", "0"], "must be between 1 and 512"),
        (["--max-audio-seconds", "41"], "must be in (0, 40]"),
        (["--max-batch", "0"], "must be >= 1"),
    ],
)
def test_export_option_limits(tiny_random_dir, tmp_path, args, message):
    r = cli_in_process("export", str(tiny_random_dir), "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and message in r.stderr


def test_artifacts_load_from_the_output_folder_alone(exported, tmp_path, oracle_random):
    from transformers import AutoModelForCausalLM  # lazy: transformers imports in seconds

    out, _ = exported
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # nothing may point back at the checkpoint
    OnnxEncoderProjector(moved / "onnx" / "encoder.onnx", moved / "onnx" / "projector.onnx")
    for name in ("llm_merged", "llm_base"):
        AutoModelForCausalLM.from_pretrained(str(moved / name))
        assert load_tokenizer(moved / name, require_placeholder=True).ids == oracle_random.special_ids
    assert load_front_end(moved / "frontend").fb.shape == (128, 257)


def test_tiny_trained_exports(exported_trained):
    manifest = ExportManifest.read(exported_trained)
    assert manifest.parity_passed is True
    assert manifest.model.lora_scale == 2.0


@pytest.mark.parametrize("which", ["exported_trained", "exported_random"])
def test_every_tokenizer_folder_an_export_writes_loads_under_transformers_4_57(which, request):
    """The GPU image's transformers is 4.57.3 (TensorRT-LLM 1.2.1's pin): no folder may name a
    class only transformers 5 has (TokenizersBackend)."""
    out = request.getfixturevalue(which)
    configs = sorted(out.rglob("tokenizer_config.json"))
    assert {c.parent.name for c in configs} >= {"llm_merged", "llm_base"}
    for config in configs:
        values = json.loads(config.read_text())
        assert values.get("tokenizer_class") in TRANSFORMERS_4_57_TOKENIZER_CLASSES, config
        assert isinstance(values.get("extra_special_tokens", {}), dict), config  # 4.57.3: a dict, 5: a list


def test_non_empty_output_folder_is_refused(tiny_random_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(CanaryTritonError, match="not empty.*--force"):
        export_checkpoint(tiny_random_dir, tmp_path, ExportOptions(profile="cpu"))


def test_audio_limit_beyond_the_positional_table_is_refused(tiny_random_dir):
    info = inspect_checkpoint(tiny_random_dir)
    check_audio_limit(info, 40.0)
    with pytest.raises(CanaryTritonError, match="positional table"):
        check_audio_limit(info, 401.0)


def test_checkpoint_without_lora_exports_the_base_model(tiny_random_dir, tmp_path):
    ckpt = tmp_path / "nolora"

    shutil.copytree(tiny_random_dir, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    del cfg["lora"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    tensors = load_file(str(ckpt / "model.safetensors"))
    plain = {}
    for k, v in tensors.items():
        if ".lora_" in k:
            continue
        if k.startswith(PEFT_PREFIX):
            k = "llm." + k[len(PEFT_PREFIX) :].replace(".base_layer", "")
        plain[k] = v
    save_file(plain, str(ckpt / "model.safetensors"))
    merged, base = export_llm(inspect_checkpoint(ckpt), tmp_path / "out")
    a, b = load_file(str(merged / "model.safetensors")), load_file(str(base / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(
        a["model.layers.0.self_attn.q_proj.weight"],
        tensors[PEFT_PREFIX + "model.layers.0.self_attn.q_proj.base_layer.weight"],
    )


_NEMO_ALONE = """
import json, sys
import torch
from nemo.collections.speechlm2.models import SALM
from canary_triton.frontend.audio import load_audio
from canary_triton.checkpoint.reader import inspect_checkpoint
from canary_triton.checkpoint.oracle import Oracle
ckpt, files = sys.argv[1], sys.argv[2:]
model = SALM.from_pretrained(ckpt, local_files_only=True, strict=True).to(torch.float32).eval()  # NeMo's own lookup
texts = Oracle(model, inspect_checkpoint(ckpt)).transcribe([load_audio(f, 16000) for f in files])
print("TEXTS=" + json.dumps(texts))
"""


@pytest.mark.parametrize("where", ["folder", "hub-cache"])
def test_export_finds_the_qwen3_named_by_pretrained_llm_without_llm_dir(
    where, tiny_trained_dir, exported_trained, server_trained, tmp_path
):
    """A checkpoint that names its Qwen3 as NeMo's save_pretrained writes it (``pretrained_llm``: a
    folder, or a hub id in the local cache) exports with no --llm-dir to the same artifacts as the
    bundled layout; NeMo loading it by itself transcribes as the served export does."""

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if where == "folder":
        qwen = _qwen3_folder(tiny_trained_dir, tmp_path / "qwen3")
        ckpt = _bare_checkpoint(tiny_trained_dir, tmp_path / "canary", pretrained_llm=str(qwen))
    else:
        repo_id = json.loads((tiny_trained_dir / "config.json").read_text())["pretrained_llm"]
        hub_cache_with(tmp_path / "hf" / "hub", repo_id, _cache_files(tiny_trained_dir))
        ckpt = _bare_checkpoint(tiny_trained_dir, tmp_path / "canary")
        env["HF_HUB_CACHE"] = str(tmp_path / "hf" / "hub")
    assert not (ckpt / "llm_backbone").exists() and not (ckpt / "tokenizer.json").exists()
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "canary_triton.cli",
            "export",
            str(ckpt),
            "-o",
            str(out),
            "--precision",
            "fp32",
        ],  # as the bundled export (conftest), whatever this CPU has
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert ExportManifest.read(out).parity_passed is True
    for rel in (
        "onnx/encoder.onnx",
        "onnx/projector.onnx",
        "llm_merged/model.safetensors",
        "llm_base/model.safetensors",
        "llm_merged/tokenizer.json",
        "frontend/mel.safetensors",
    ):
        assert (out / rel).read_bytes() == (exported_trained / rel).read_bytes(), rel
    ours, bundled = (ExportManifest.read(d) for d in (out, exported_trained))
    assert (ours.special_ids, ours.asr_prompt_ids, ours.limits, ours.model) == (
        bundled.special_ids,
        bundled.asr_prompt_ids,
        bundled.limits,
        bundled.model,
    )
    # NeMo alone (SALM.from_pretrained with its own lookup) against the served transcripts.
    files = [str(p) for p in sorted(DEMO_HELDOUT.glob("*.flac"))[:4]]
    nemo = subprocess.run(
        [sys.executable, "-c", _NEMO_ALONE, str(ckpt), *files],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert nemo.returncode == 0, nemo.stderr[-2000:]
    want = json.loads(nemo.stdout.split("TEXTS=")[-1])
    with CanaryClient(server_trained.grpc_url) as c:
        assert [c.transcribe(f) for f in files] == want
    shutil.rmtree(out)


def test_llm_max_output_len_is_the_engines_and_must_fit_the_context(
    tiny_trained_dir, exported_trained, exported_random
):
    info = inspect_checkpoint(tiny_trained_dir)
    context = info.llm_cfg["max_position_embeddings"]
    most = context - LlmEngineOptions().max_input_len
    assert llm_max_output_len(info, LlmEngineOptions(max_new_tokens=most)) == most
    with pytest.raises(
        CanaryTritonError, match=f"exceeds the Qwen3's max_position_embeddings {context}; the most is {most}"
    ):
        llm_max_output_len(info, LlmEngineOptions(max_new_tokens=most + 1))
    limits = [ExportManifest.read(d).limits for d in (exported_trained, exported_random)]
    assert [lim.llm_max_output_len for lim in limits] == [512, LONG_GENERATION_TOKENS]
    assert [lim.max_new_tokens for lim in limits] == [512, 512]  # ASR requests keep the contract's cap
