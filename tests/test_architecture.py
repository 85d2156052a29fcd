"""The import graph of the project (issue 14), as docs/ARCHITECTURE.md defines it.

Every module of porthub, converters, torch_models and paddle_models is parsed with ``ast``; every import
counts, at module level and inside functions (relative imports resolved; only ``if TYPE_CHECKING:``
blocks are left out, since they never run). The test fails on:

* a module that no layer of :data:`LAYERS` claims (a new module must be placed in the table and the doc);
* an import from a layer to one it may not import (a higher one, or for the models anything but L0);
* any import circle among modules (a function-level import that closes a circle counts);
* torch or paddle imported outside the runtime and the model packages.

:data:`LAYERS` mirrors the table of docs/ARCHITECTURE.md; the test also checks that the doc names every
layer's modules, so the two cannot drift apart silently.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("porthub", "converters", "torch_models", "paddle_models")

#: (layer, the modules in it as fnmatch patterns, the layers it may import besides its own)
LAYERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "L0 pure",
        (
            "porthub.errors",
            "porthub.spec",
            "porthub.devices",
            "porthub.normspec",
            "porthub.compare",
            "porthub.catalogue",
            "porthub.version",
            "porthub.geometry",
            "porthub.geometry.*",
        ),
        (),
    ),
    ("models", ("torch_models", "torch_models.*", "paddle_models", "paddle_models.*"), ("L0 pure",)),
    ("L1 io", ("porthub.io", "porthub.io.*"), ("L0 pure",)),
    ("L2 core", ("porthub.engine", "porthub.registry", "porthub.inputs"), ("L0 pure", "L1 io")),
    ("L2 specs", ("converters", "converters.*"), ("L0 pure", "L1 io", "L2 core")),
    (
        "L3 runtime",
        ("porthub.runtime", "porthub.runtime.*", "porthub.manifest"),
        ("L0 pure", "L1 io", "L2 core", "L2 specs", "models"),
    ),
    (
        "L4 services",
        (
            "porthub.convert",
            "porthub.verify",
            "porthub.pairs",
            "porthub.report",
            "porthub.preprocess",
            "porthub.gradients",
            "porthub.evaluate",
            "porthub.predict",
            "porthub.zoo",
            "porthub.export",
            "porthub.export.*",
            "porthub.sources",
            "porthub.sources.*",
            "porthub.hub",
            "porthub.hub.*",
        ),
        ("L0 pure", "L1 io", "L2 core", "L2 specs", "L3 runtime"),
    ),
    (
        "L5 front",
        ("porthub", "porthub.__main__", "porthub.cli", "porthub.hub_cli", "porthub.export_cli", "porthub.predict_cli"),
        ("L0 pure", "L1 io", "L2 core", "L2 specs", "L3 runtime", "L4 services"),
    ),
)
#: the only modules that may import torch or paddle themselves
FRAMEWORK_IMPORTERS = ("porthub.runtime.torch", "porthub.runtime.paddle", "torch_models.*", "paddle_models.*")
FRAMEWORKS = ("torch", "paddle")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run: the whole tree except the bodies of ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _imports(name: str, path: Path) -> set[str]:
    """The absolute names ``name`` imports: ``pkg.mod`` for ``from pkg import mod`` when that is a module,
    else the module the names come from."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            found.add(sub if sub in MODULES else source)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    for layer, patterns, _ in LAYERS:
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return layer
    return None


def _internal(module: str) -> str | None:
    """The project module an imported name is (or lies in), or None for third-party and stdlib."""
    while module:
        if module in MODULES:
            return module
        module = module.rpartition(".")[0]
    return None


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = sorted(m for m in MODULES if _layer(m) is None)
    assert not unplaced, f"modules no layer claims (add them to LAYERS and docs/ARCHITECTURE.md): {unplaced}"


def test_imports_go_only_to_allowed_layers() -> None:
    allowed = {layer: {layer, *below} for layer, _, below in LAYERS}
    bad = []
    for module, targets in GRAPH.items():
        here = _layer(module)
        for target in sorted(filter(None, map(_internal, targets))):
            there = _layer(target)
            if here is not None and there is not None and there not in allowed[here]:
                bad.append(f"{module} ({here}) imports {target} ({there})")
    assert not bad, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(bad)


def _cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    edges = {m: sorted({t for t in map(_internal, GRAPH[m]) if t and t != m}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_no_import_circle() -> None:
    cycles = _cycles()
    assert not cycles, "import circles (module level or inside functions): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_only_the_runtime_and_the_models_import_torch_or_paddle() -> None:
    bad = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target.split(".")[0] in FRAMEWORKS and not any(fnmatch.fnmatchcase(module, p) for p in FRAMEWORK_IMPORTERS)
    )
    assert not bad, "torch/paddle outside porthub.runtime and the model packages: " + ", ".join(bad)


def test_models_never_import_the_specs() -> None:
    bad = sorted(
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if m.split(".")[0] in ("torch_models", "paddle_models")
        for t in targets
        if t.split(".")[0] == "converters"
    )
    assert not bad, bad


def test_the_doc_names_every_layer_and_its_modules() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [
        f"{layer}: {pattern}"
        for layer, patterns, _ in LAYERS
        for pattern in (layer, *patterns)
        if f"`{pattern}`" not in doc and pattern not in doc
    ]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"


@pytest.mark.parametrize(
    "source, imports, expect",
    [
        ("from .b import f\n", "pkg.a", {"pkg.b"}),
        ("def g():\n    from ..c import b\n", "pkg.sub.a", {"pkg.c"}),
        ("class K:\n    def g(self):\n        import porthub.hub.repo\n", "pkg.a", {"porthub.hub.repo"}),
        ("from . import compare\n", "porthub.a", {"porthub.compare"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import T\n", "pkg.a", {"typing"}),
    ],
)
def test_the_walker_sees_function_level_and_relative_imports(
    tmp_path: Path, source: str, imports: str, expect: set[str]
) -> None:
    """The parser itself, on tiny sources: relative imports resolve, a function-level import counts, a
    submodule imported by ``from package import module`` is that module, a TYPE_CHECKING block is left out."""
    path = tmp_path / "a.py"
    path.write_text(source, encoding="utf-8")
    assert _imports(imports, path) == expect
