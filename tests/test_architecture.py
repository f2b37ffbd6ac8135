"""The library's shape, checked on its source: backends never reach up into the model,
and no two modules import each other (counting imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import fastnn.kernels

import fastnn

# fastnn.kernels is the top-level kernels/ folder, installed under fastnn (pyproject)
ROOTS = {
    "fastnn": Path(fastnn.__file__).parent,
    "fastnn.kernels": Path(fastnn.kernels.__file__).parent,
}


def _modules() -> dict[str, Path]:
    mods = {}
    for prefix, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([prefix, *parts])] = path
    return mods


def _imports(name: str, path: Path, mods) -> set[str]:
    """Every fastnn module ``name`` imports, anywhere in the file (functions included),
    with the packages Python runs on the way (``a.b.c`` runs ``a.b`` first; the top
    ``fastnn`` package and the module's own packages are left out: they are already
    running when it is imported)."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            parts = t.split(".")
            for i in range(2, len(parts) + 1):  # the packages on the way, then the module
                cand = ".".join(parts[:i])
                if cand in mods and cand != name and not name.startswith(cand + "."):
                    found.add(cand)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def test_the_import_graph_is_read_from_the_source():
    g = _graph()
    assert "fastnn.layers.sequential" in g["fastnn.io"] or "fastnn.io" in g.get(
        "fastnn.layers.sequential", set()
    )
    assert "fastnn.training" in g["fastnn.layers.sequential"]
    assert "fastnn.kernels.cpu" in g["fastnn.backends.numba_backend"]  # a function import


def test_backends_never_import_the_model_classes():
    banned = ("fastnn.layers", "fastnn.losses", "fastnn.optimizers", "fastnn.callbacks")
    for name, deps in _graph().items():
        if name.startswith("fastnn.backends"):
            bad = sorted(d for d in deps if d.startswith(banned))
            assert not bad, f"{name} imports {bad}"


def test_no_import_cycles():
    g = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycle = path[path.index(d) :] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_backends_reach_the_model_only_through_its_spec():
    """No backend reads or writes a model's, layer's or optimizer's internals (the step
    count, the state dict, private helpers): they get a spec (fastnn/spec.py)."""
    internals = {"iterations", "_slices", "_head_fused", "params", "grads", "learning_rate"}
    for name, path in _modules().items():
        if not name.startswith("fastnn.backends"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        bad = used & internals
        assert not bad, f"{name} touches {sorted(bad)}"


def test_the_compiled_path_advances_the_optimizer_through_its_api(monkeypatch):
    import numpy as np

    from fastnn import optimizers
    from fastnn.layers import Dense

    if "numba" not in fastnn.available_backends():
        return
    calls = []
    real = optimizers.Optimizer.advance
    monkeypatch.setattr(
        optimizers.Optimizer, "advance", lambda self, n: (calls.append(n), real(self, n))
    )
    X = np.random.default_rng(0).standard_normal((50, 3))
    m = fastnn.Sequential([Dense(4, "relu"), Dense(1, "sigmoid")], backend="numba")
    m.compile("adam", "binary_crossentropy")
    m.fit(X, (X[:, 0] > 0) * 1.0, batch_size=16, epochs=2, verbose=0, seed=0)
    assert m.training_path.startswith("fused numba epoch")
    assert calls == [4, 4] and m.optimizer.iterations == 8
