"""canary_triton/gpu/stack.py: the GPU image's version report and its release check (the
Dockerfile's ``python3 -m canary_triton.gpu.stack --release ... --require-supported``; the
Dockerfile's own use is in test_gpu_image.py)."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from canary_triton.gpu import stack as gs


def test_it_imports_only_the_standard_library():
    """The Dockerfile runs it before the project's dependencies are installed."""
    tree = ast.parse(Path(gs.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no imports from the project"
            imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_installed_versions_read_the_metadata_and_give_none_for_the_absent():
    got = gs.installed_versions(("numpy", "surely-not-an-installed-distribution"))
    assert got == {"numpy": importlib.metadata.version("numpy"), "surely-not-an-installed-distribution": None}
    assert got["numpy"] == np.__version__
    assert list(gs.installed_versions()) == list(gs.REPORTED)  # every reported name, in order


def test_damaged_metadata_reads_as_absent():
    def version(name):
        if name == "torch":
            raise ValueError("bad METADATA")
        return "1.0"

    got = gs.installed_versions(("torch", "onnx"), version=version)
    assert got == {"torch": None, "onnx": "1.0"}


@pytest.mark.parametrize("release,trtllm", [("26.06", "1.2.1"), ("26.07", "1.2.0rc3"), ("27.01", "1.2.9")])
def test_releases_from_the_first_supported_that_ship_trtllm_1_2_pass(release, trtllm):
    assert gs.check_release(release, trtllm) == trtllm


@pytest.mark.parametrize(
    "release,trtllm,message",
    [
        ("26.05", "1.2.1", "TRITON_RELEASE 26.05 is older than 26.06"),
        ("25.12", "1.2.1", "TRITON_RELEASE 25.12 is older than 26.06"),
        ("26.10", "1.3.0", "TRITON_RELEASE 26.10 ships TensorRT-LLM 1.3.0; allowed: releases 26.06 or later"),
        ("26.06", "1.20.0", "ships TensorRT-LLM 1.20.0"),  # a prefix of the version, not of its text
        ("26.06", None, "TRITON_RELEASE 26.06: TensorRT-LLM is not installed in the image"),
        ("26", "1.2.1", "TRITON_RELEASE '26' is not a release name like 26.06"),
        ("26.x", "1.2.1", "TRITON_RELEASE '26.x' is not a release name like 26.06"),
        ("?", "1.2.1", "TRITON_RELEASE '?' is not a release name"),
    ],
)
def test_unsupported_releases_are_refused_naming_what_is_allowed(release, trtllm, message):
    with pytest.raises(gs.StackError) as e:
        gs.check_release(release, trtllm)
    text = str(e.value)
    assert message in text and "\n" not in text
    if "not a release name" not in message:
        assert "known: 26.06, 26.07" in text


def test_the_report_without_the_check_always_succeeds(capsys):
    fake = {"tensorrt_llm": "1.3.0", "numpy": "2.0.0"}
    code = gs.main([], version=lambda name: fake[name])  # KeyError: absent
    out = capsys.readouterr()
    rows = dict(line.split("\t") for line in out.out.strip().splitlines())
    assert code == 0 and out.err == ""
    assert list(rows) == list(gs.REPORTED) and rows["tensorrt_llm"] == "1.3.0" and rows["torch"] == "-"


def test_the_check_without_a_release_is_refused(capsys):
    assert gs.main(["--require-supported"], version=lambda name: "1.2.1") == 2
    assert capsys.readouterr().err == "error: TRITON_RELEASE '?' is not a release name like 26.06\n"


def test_it_runs_as_a_module():
    r = subprocess.run(
        [sys.executable, "-m", "canary_triton.gpu.stack", "--release", "25.01", "--require-supported"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: TRITON_RELEASE 25.01 is older than 26.06")
    assert r.stdout.splitlines()[0].split("\t")[0] == "tensorrt_llm"
