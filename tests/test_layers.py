"""The package's layers: each module imports only from its own layer or a lower one.

Every ``import`` and ``from ... import`` is read with ``ast`` (module level, inside functions, under
``if TYPE_CHECKING``), resolved to the module it names, and checked against :data:`LAYERS`. A new
module must be given its layer here. Imports between the package's modules must also form no
cycle.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first. Names are relative to ``canary_triton`` ("" is the package's ``__init__``, the
#: version); a name covers its submodules. ``benchmarks`` is the top-level benchmarks package.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contract", ("", "contract", "errors", "artifacts", "bundled")),  # bundled: the shipped data's paths
    (
        "runtime",  # model math and the CPU runtime: no export, Triton or client code
        (
            "frontend",
            "checkpoint",
            "evaluation",
            "longform",
            "cpu_llm",
            "runtime",
            "model_params",  # the Triton models' parameters: rendered by export, parsed by the models
            "gpu.throughput",  # arithmetic on the checkpoint's shapes; the export reads its defaults
            "gpu.assumptions",  # its parts: the GPUs' data sheets and what it assumes,
            "gpu.model_shapes",  # what it reads of a checkpoint,
            "gpu.costs",  # a request's costs and the memory plan
            "gpu.stack",  # the GPU image's pinned versions, checked against what is installed
        ),
    ),
    ("export", ("export",)),
    ("triton", ("triton_models",)),
    (
        "top",  # entry points and what only they use
        ("client", "serving", "gateway", "cli", "gpu", "fixtures", "benchmarks"),
    ),
)


def _package_dirs() -> dict[str, Path]:
    """Package name -> folder: every import name is its folder (no package-dir mapping)."""
    return {"canary_triton": ROOT / "canary_triton", "benchmarks": ROOT / "benchmarks"}


def _modules() -> dict[str, Path]:
    """Every module of the package and the benchmarks: dotted name -> file."""
    out: dict[str, Path] = {}
    for pkg, folder in _package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("").parts
            if "assets" in rel:
                continue
            parts = [pkg, *rel]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module`` (None: not in the table)."""
    best, best_len = None, -1
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            full = "benchmarks" if name == "benchmarks" else f"canary_triton.{name}" if name else "canary_triton"
            covers = module == full or (name != "" and module.startswith(full + "."))
            if covers and len(full) > best_len:
                best, best_len = index, len(full)
    return best


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """The project modules ``module`` imports, anywhere in the file, with their line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in ("canary_triton", "benchmarks"):
                out.append((target, node.lineno))
    return out


@functools.cache
def _graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    """Every module and its project imports (read once: the tests only look)."""
    modules = _modules()
    known = set(modules)
    return modules, {m: _imports(m, p, known) for m, p in modules.items()}


def test_every_module_has_a_layer():
    modules, _ = _graph()
    missing = sorted(m for m in modules if layer_of(m) is None)
    assert not missing, f"give these modules a layer in tests/test_layers.py LAYERS: {missing}"


def test_every_project_import_names_an_existing_module():
    modules, graph = _graph()
    unknown = sorted(
        f"{modules[m].relative_to(ROOT)}:{line}: {m} -> {t}"
        for m, imps in graph.items()
        for t, line in imps
        if t not in modules
    )
    assert not unknown, "imports of modules that do not exist:\n" + "\n".join(unknown)


def test_modules_import_only_their_own_layer_or_lower():
    modules, graph = _graph()
    bad = []
    for m, imps in sorted(graph.items()):
        mine = layer_of(m)
        for target, line in imps:
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(
                    f"{modules[m].relative_to(ROOT)}:{line}: {m} ({LAYERS[mine][0]}) -> {target} ({LAYERS[theirs][0]})"
                )
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def find_cycles(edges: dict[str, list[str]]) -> list[str]:
    """Each cycle of the import graph ``edges`` (module -> modules it imports) met by a depth-first walk."""
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        stack.append(m)
        for t in edges.get(m, ()):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    return cycles


def test_no_import_cycles():
    _, graph = _graph()
    # A package's __init__ and its submodules import one another by design (the __init__ exposes
    # them): an edge from a submodule up to its own package is not followed.
    edges = {
        m: sorted({t for t, _ in imps if t in graph and t != m and not m.startswith(t + ".")})
        for m, imps in graph.items()
    }
    cycles = find_cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_resolves_relative_package_and_lazy_imports(tmp_path):
    """The resolution the checks above rely on, on files of their own."""
    init = tmp_path / "__init__.py"
    init.write_text(
        "from . import contract\nfrom .export.frontend import x\n"
        "def f():\n    from .client import CanaryClient\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import canary_triton.runtime.loaders\n"
    )
    known = {"canary_triton.contract", "canary_triton.client", "canary_triton.export.frontend"}
    got = sorted(t for t, _ in _imports("canary_triton", init, known))
    assert got == [
        "canary_triton.client",
        "canary_triton.contract",
        "canary_triton.export.frontend",
        "canary_triton.runtime.loaders",
    ]
    sub = tmp_path / "cli.py"
    sub.write_text("from ..errors import CanaryTritonError\nfrom . import options\nimport numpy\n")
    got = sorted(t for t, _ in _imports("canary_triton.gateway.command", sub, {"canary_triton.gateway.options"}))
    assert got == ["canary_triton.errors", "canary_triton.gateway.options"]
    assert layer_of("canary_triton") == 0 and layer_of("canary_triton.export.pipeline") == 2
    assert layer_of("canary_triton.triton_models.llm") == 3 and layer_of("benchmarks._common") == 4
    assert layer_of("canary_triton.no_such_module") is None
    assert find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": ["b", "c"], "b": ["c"], "c": []}) == []
