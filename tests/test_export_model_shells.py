"""canary_triton/export/model_shells.py: each Python model's ``model.py`` is a thin shell, the
bootstrap import first, then ``TritonPythonModel`` = the library class over the backend's
``pb_utils`` (loaded here with the fake in its place; no tritonserver)."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from canary_triton.artifacts import ExportManifest
from canary_triton.export.model_shells import BOOTSTRAP, PYTHON_MODELS, shell_source, write_shell
from canary_triton.export.repository import RepositoryOptions, describe

from .fake_pb_utils import FakePbUtils
from .inprocess import CLASSES


def test_every_python_model_of_the_repository_has_a_shell_and_the_class_tests_use(exported_trained):
    decls = describe(ExportManifest.read(exported_trained), "cpu", RepositoryOptions(), exported_trained)
    python = {d.name for d in decls if d.backend == "python"}
    assert python == set(PYTHON_MODELS) == set(CLASSES)


@pytest.mark.parametrize("model", sorted(PYTHON_MODELS))
def test_a_shell_imports_bootstrap_first_and_exposes_the_library_class(model, tmp_path, monkeypatch):
    write_shell(model, tmp_path)
    path = tmp_path / "model.py"
    assert path.read_text() == shell_source(model)
    assert (tmp_path / BOOTSTRAP.name).read_bytes() == BOOTSTRAP.read_bytes()
    code = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert code[0].startswith("import canary_bootstrap"), code[0]
    assert "def initialize" not in path.read_text() and "def execute" not in path.read_text()
    fake = FakePbUtils()
    monkeypatch.setitem(sys.modules, "canary_bootstrap", types.ModuleType("canary_bootstrap"))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    spec = importlib.util.spec_from_file_location(f"_shell_{model}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shell = module.TritonPythonModel()  # Triton constructs it without arguments
    assert type(shell).__mro__[1] is CLASSES[model] and shell.pb is fake
