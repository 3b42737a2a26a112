"""Each `model_repository/<model>/1/model.py` is a thin shell: the bootstrap import first, then
``TritonPythonModel`` = the library class over the backend's ``pb_utils`` (loaded here with the
fake in its place; no tritonserver)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from canary_triton.export.repository import MODEL_SOURCES

from .fake_pb_utils import FakePbUtils
from .inprocess import CLASSES

SHELLS = sorted(p.parent.parent.name for p in MODEL_SOURCES.glob("*/1/model.py"))


def test_every_python_model_has_a_shell_and_a_class(exported_trained):
    """The CPU repository's Python models, each with its source's shell and the class tests use."""
    from canary_triton.artifacts import ExportManifest
    from canary_triton.export.repository import RepositoryOptions, describe

    decls = [
        d
        for d in describe(ExportManifest.read(exported_trained), "cpu", RepositoryOptions(), exported_trained)
        if d.backend == "python"
    ]
    assert {d.name for d in decls} == set(CLASSES)
    assert {d.source or d.name for d in decls} == set(SHELLS)
    for d in decls:
        assert CLASSES[d.name] is CLASSES[d.source or d.name]


@pytest.mark.parametrize("source", SHELLS)
def test_shell_imports_bootstrap_first_and_exposes_the_library_class(source, monkeypatch):
    path = MODEL_SOURCES / source / "1" / "model.py"
    code = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert code[0].startswith("import canary_bootstrap"), code[0]
    assert "def initialize" not in path.read_text() and "def execute" not in path.read_text()
    fake = FakePbUtils()
    monkeypatch.setitem(sys.modules, "canary_bootstrap", types.ModuleType("canary_bootstrap"))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    spec = importlib.util.spec_from_file_location(f"_shell_{source}", Path(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()  # Triton constructs it without arguments
    assert isinstance(model, CLASSES[source]) and model.pb is fake
