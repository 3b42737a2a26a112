"""The GPU image (Dockerfile.triton, not built here): it installs what the gpu export imports at
versions that agree with TensorRT-LLM 1.2, keeps the image's own stack, gives uid 1000 writable
caches, and refuses a TRITON_RELEASE without TensorRT-LLM 1.2.x (canary_triton/gpu/stack.py)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from canary_triton.gpu import stack as gpu_stack

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.triton"
#: Module -> where the GPU image gets it ("image": NVIDIA's image ships it; else the pip requirement).
GPU_EXPORT_PROVIDERS = {
    "tensorrt": "image",
    "tensorrt_llm": "image",
    "torch": "image",
    "numpy": "image",
    "onnx": "image",
    "transformers": "image",
    "modelopt": "nvidia-modelopt[onnx]",  # its onnx part needs the [onnx] extra (onnxruntime at top level)
    "onnxruntime": "nvidia-modelopt[onnx]",  # onnxruntime-gpu comes with the extra
    "nemo": "nemo_toolkit[asr]",
    "safetensors": "safetensors",
    "peft": "peft",
}


def _gpu_export_imports() -> set[str]:
    """Top-level modules imported (at any depth) by the gpu export path's modules."""
    mods = set()
    for name in ("pipeline", "tensorrt_engine", "trtllm_engine", "onnx_encoder", "lora", "frontend"):
        tree = ast.parse((ROOT / "canary_triton" / "export" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])

    # the project's own package is the image's `pip install .`
    return {m for m in mods if m not in sys.stdlib_module_names and m not in ("__future__", "canary_triton")}


def _install_lines() -> str:
    text = DOCKERFILE.read_text().replace("\\\n", " ")  # join continued lines
    return " ".join(re.findall(r"pip install [^&\n]*", text))


def test_the_image_provides_every_module_the_gpu_export_imports():
    """ONNX Runtime and modelopt's ONNX part were missing: `export --profile gpu` crashed there."""
    imports = _gpu_export_imports()
    assert {"onnxruntime", "modelopt", "tensorrt", "tensorrt_llm", "onnx"} <= imports
    unknown = imports - GPU_EXPORT_PROVIDERS.keys()
    assert not unknown, f"the gpu export imports {unknown}: say where the image gets it"
    installs = _install_lines()
    for module in imports:
        provider = GPU_EXPORT_PROVIDERS[module]
        if provider != "image":
            assert f'"{provider}' in installs, (module, provider)
    assert '"nvidia-modelopt[onnx]==0.37.*"' in installs  # the image's modelopt (TensorRT-LLM 1.2.1: ~=0.37.0)


def test_the_image_keeps_its_own_stack_and_pins_agree_with_tensorrt_llm():
    text = DOCKERFILE.read_text()
    assert "pip list --format=freeze" in text
    keep = re.search(r"grep -iE '\^\((.+?)\)=='", text).group(1)
    for name in ("torch", "tensorrt", "numpy", "onnx", "nvidia[-_]modelopt", "transformers"):
        assert name in keep.split("|"), name
    assert not re.search(r'"onnx==', text)  # TensorRT-LLM 1.2: onnx>=1.18,<1.20 -> the image's onnx


def test_uid_1000_gets_writable_caches():
    text = DOCKERFILE.read_text()
    env = dict(re.findall(r"(?:^ENV |^\s+)(HOME|NUMBA_CACHE_DIR|HF_HOME|XDG_CACHE_HOME)=(\S+)", text, re.M))
    assert set(env) == {"HOME", "NUMBA_CACHE_DIR", "HF_HOME", "XDG_CACHE_HOME"}
    assert all(v.startswith("/engines/") for v in env.values())  # the volume uid 1000 owns
    entry = (ROOT / "deploy" / "entrypoint-gpu.sh").read_text()
    assert 'mkdir -p "${HOME' in entry and "NUMBA_CACHE_DIR" in entry


def test_the_dockerfile_checks_the_release():
    text = DOCKERFILE.read_text()
    assert 'python3 -m canary_triton.gpu.stack --release "${TRITON_RELEASE}" --require-supported' in text
    release = re.search(r"^ARG TRITON_RELEASE=(\S+)$", text, re.M).group(1)
    assert gpu_stack.check_release(release, gpu_stack.KNOWN_RELEASES[release]) == "1.2.1"


def _fake(versions):
    def version(name):
        if versions.get(name) is None:
            raise LookupError(name)
        return versions[name]

    return version


@pytest.mark.parametrize(
    "release,trtllm,message",
    [
        ("26.08", "1.3.0", "TRITON_RELEASE 26.08 ships TensorRT-LLM 1.3.0; allowed: releases 26.06 or later"),
        ("25.12", "1.2.0", "TRITON_RELEASE 25.12 is older than 26.06"),
        ("26.06", None, "TensorRT-LLM is not installed"),
        ("latest", "1.2.1", "is not a release name like 26.06"),
    ],
)
def test_unsupported_releases_are_refused_in_one_line(release, trtllm, message, capsys):
    code = gpu_stack.main(["--release", release, "--require-supported"], version=_fake({"tensorrt_llm": trtllm}))
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and err.startswith("error: ")


def test_supported_release_reports_versions(capsys):
    fake = _fake({"tensorrt_llm": "1.2.1", "tensorrt": "10.14.1.48", "torch": "2.10.0a0"})
    assert gpu_stack.main(["--release", "26.07", "--require-supported"], version=fake) == 0
    out = dict(line.split("\t") for line in capsys.readouterr().out.strip().splitlines())
    assert out["tensorrt_llm"] == "1.2.1" and out["tensorrt"] == "10.14.1.48" and out["onnx"] == "-"
