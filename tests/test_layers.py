"""The package's import structure (docs/design.md, "Layers"): no import cycle, no private name
imported from another module, and every import points down the layers

    foundation -> math -> backends -> checkpoint -> lab

(a module imports its own layer or those below; the backends do not import one another).
Read from the source with ``ast``: every ``import`` counts, also those inside functions,
since an import deferred to run time is still a dependency.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import rmsprop

PACKAGE = pathlib.Path(rmsprop.__file__).parent

LAYERS = {
    "foundation": ["rmsprop", "rmsprop.spec", "rmsprop.suggest", "rmsprop._defaults",
                   "rmsprop.errors", "rmsprop.extras", "rmsprop.numba_cache"],
    "math": ["rmsprop.element", "rmsprop.update", "rmsprop.reference"],
    "backends": ["rmsprop.numpy", "rmsprop.optax", "rmsprop.torch"],
    "checkpoint": ["rmsprop.checkpoint"],
    "lab": ["rmsprop.experiments", "rmsprop.benchmark", "rmsprop.cli", "rmsprop.__main__",
            "rmsprop.flavor_table", "rmsprop.testing"],
}
ORDER = list(LAYERS)


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """Every module of the package: name -> (file, is a package's ``__init__``)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in module ``name``
    that resolves inside the package."""
    path, is_package = MODULES[name]
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    found.append((f"{target}.{alias.name}", None, node.lineno))
                elif target in MODULES:
                    found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names
                      if alias.name in MODULES]
    return found


def _layer(module: str) -> str:
    for layer, roots in LAYERS.items():
        if any(module == root or module.startswith(root + ".") for root in roots
               if root != "rmsprop") or module in roots:
            return layer
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _backend(module: str) -> str | None:
    return next((root for root in LAYERS["backends"]
                 if module == root or module.startswith(root + ".")), None)


GRAPH = {name: {target for target, _, _ in _imports(name)} - {name} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_reader_resolves_relative_imports():
    assert "rmsprop.element" in GRAPH["rmsprop.update"]
    assert "rmsprop.torch.kernels.tensors" in GRAPH["rmsprop.torch.kernels.fused_cpu"]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_from_another_module(module):
    private = [f"line {line}: {name} from {target}" for target, name, line in _imports(module)
               if name is not None and name.startswith("_") and not name.endswith("__")
               and target != module]
    assert not private, f"{module} imports private names: {private}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    mine = ORDER.index(_layer(module))
    upward = [target for target in GRAPH[module] if ORDER.index(_layer(target)) > mine]
    assert not upward, f"{module} ({_layer(module)}) imports from higher layers: {upward}"
    if _backend(module):
        others = [t for t in GRAPH[module] if _backend(t) not in (None, _backend(module))]
        assert not others, f"{module} imports another backend: {others}"


def test_checkpoint_reads_the_optimizer_only_through_its_state_schema():
    """rmsprop.checkpoint imports nothing of rmsprop.torch but its public state schema
    (docs/design.md, "Layers"): no storage detail of lean state, no cold-start registry."""
    reached = {f"{module} -> {target}" for module in MODULES
               if module == "rmsprop.checkpoint" or module.startswith("rmsprop.checkpoint.")
               for target in GRAPH[module]
               if _backend(target) == "rmsprop.torch" and target != "rmsprop.torch.state_schema"}
    assert not reached, f"rmsprop.checkpoint reaches into rmsprop.torch: {sorted(reached)}"
