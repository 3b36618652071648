"""The layer rule (docs/ARCHITECTURE.md), checked by walking every import of the package with ``ast``.

Data flows config -> extraction -> data -> model -> ops -> detections -> inference -> evaluation -> training ->
presentation, with the entry points on top. Every ``import``/``from ... import`` counts, at module level and inside
functions (a lazy import still runs), relative ones resolved, plus ``importlib.import_module("literal")``; importing
``pkg.sub.mod`` from outside ``pkg`` also runs ``pkg/__init__.py``, so it counts as importing ``pkg`` too. Imports
under ``if TYPE_CHECKING:`` never run: they are held to the layer order but not to the library and cycle rules.

One deliberate difference from the data-flow order: ops sits below model in the import order. The model calls NMS
(model/postprocess.py), and ops imports nothing above the shared utilities.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import tal_kit

# The rule table. Layers in import order: a module may import its own layer and the layers listed before it.
# A module belongs to the layer of the longest prefix that names it ("tal_kit" itself only names the package's
# __init__); "*.cli" puts every package's cli module among the entry points.
LAYERS: dict[str, tuple[str, ...]] = {
    "shared": ("tal_kit", "tal_kit.config", "tal_kit.atomic", "tal_kit.runtime", "tal_kit.feature_files",
               "tal_kit.segments"),
    "extraction": ("tal_kit.extraction",),
    "data": ("tal_kit.data",),
    "ops": ("tal_kit.ops",),
    "model": ("tal_kit.model",),
    "detections": ("tal_kit.detections",),
    "inference": ("tal_kit.inference",),
    "evaluation": ("tal_kit.evaluation",),
    "training": ("tal_kit.training",),
    "presentation": ("tal_kit.viz", "tal_kit.tutorial"),
    "entry": ("tal_kit.cli", "tal_kit.__main__", "tal_kit.train", "tal_kit.infer", "tal_kit.detect",
              "tal_kit.reproduce", "tal_kit.check_data", "tal_kit.dryrun", "tal_kit.compare_features",
              "tal_kit.fetch", "tal_kit.kernels", "tal_kit.run_progress", "tal_kit.evaluate", "*.cli"),
}
PIPELINE = ("shared", "extraction", "data", "ops", "model", "detections", "inference", "evaluation", "training")
DISPLAY_LIBRARIES = ("plotly", "ipywidgets", "IPython", "matplotlib")  # presentation only


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name (a package module or a third-party top-level name)
    line: int
    runs: bool  # False under ``if TYPE_CHECKING:``


def module_names(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every .py file of the package (``pkg/sub/__init__.py`` is ``pkg.sub``)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join((package,) + parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST):
    """(node, runs) for every import statement and ``importlib.import_module`` call, anywhere in the tree."""
    def visit(node: ast.AST, runs: bool):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, False)
            for child in node.orelse:
                yield from visit(child, runs)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)):
            yield node, runs
        for child in ast.iter_child_nodes(node):
            yield from visit(child, runs)
    yield from visit(tree, True)


def imports_of(name: str, path: Path, modules: dict[str, Path], package: str) -> list[Import]:
    """What module ``name`` (file ``path``) imports: package modules by their dotted name, others by top level."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []
    for node, runs in _statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, runs) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importer's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:  # "from pkg import sub" imports the module pkg.sub when there is one
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in modules else target, node.lineno, runs))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "import_module" and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, node.lineno, runs))
    result = []
    for target, line, runs in found:
        if target == package or target.startswith(package + "."):
            while target not in modules and "." in target:  # "pkg.mod.Name" -> "pkg.mod"
                target = target.rsplit(".", 1)[0]
            result.append(Import(name, target, line, runs))
            parts = target.split(".")
            for depth in range(2, len(parts)):  # the package __init__s that run first, unless we are inside them
                parent = ".".join(parts[:depth])
                if not (name == parent or name.startswith(parent + ".")):
                    result.append(Import(name, parent, line, runs))
        else:
            result.append(Import(name, target.split(".")[0], line, runs))
    return result


def layer_of(module: str, layers: dict[str, tuple[str, ...]], package: str) -> str | None:
    best, best_len = None, -1
    last = module.rsplit(".", 1)[-1]
    for layer, prefixes in layers.items():
        for prefix in prefixes:
            if prefix.startswith("*."):
                matched = last == prefix[2:]
                length = len(module) if matched else -1
            elif prefix == package:
                matched, length = module == package, len(prefix)
            else:
                matched, length = module == prefix or module.startswith(prefix + "."), len(prefix)
            if matched and length > best_len:
                best, best_len = layer, length
    return best


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component with more than one module."""
    index, low, on_stack, stack, order, cycles = {}, {}, set(), [], [0], []

    def strongconnect(node: str):  # Tarjan's algorithm
        index[node] = low[node] = order[0]
        order[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                strongconnect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(_cycle_path(sorted(component), edges))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            strongconnect(node)
    return cycles


def _cycle_path(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for succ in sorted(edges.get(node, ())):
                if succ in members and succ not in previous:
                    previous[succ] = node
                    nxt.append(succ)
        if start in previous:
            break
        frontier = nxt
    path, node = [start], previous[start]
    while node != start:
        path.append(node)
        node = previous[node]
    return [start] + path[1:][::-1] + [start]


def layer_violations(package_dir: Path, package: str, layers: dict[str, tuple[str, ...]],
                     pipeline: tuple[str, ...], display_libraries: tuple[str, ...]) -> list[str]:
    """Every breach of the rules (a)-(d), one line each, naming the importing module and the imported one."""
    modules = module_names(package_dir, package)
    rank = {layer: i for i, layer in enumerate(layers)}
    problems, edges = [], defaultdict(set)
    for name, path in modules.items():
        own = layer_of(name, layers, package)
        if own is None:
            problems.append(f"{name}: in no layer of the rule table (add it to LAYERS)")
            continue
        where = f"{path.relative_to(package_dir.parent)}"
        for imp in imports_of(name, path, modules, package):
            at = f"{name} imports {imp.imported} ({where}:{imp.line})"
            if imp.imported not in modules:  # a third-party module
                if imp.runs and own in pipeline and imp.imported in display_libraries:
                    problems.append(f"(a) display library in the pipeline: {at}")
                continue
            if imp.imported == name:
                continue
            target = layer_of(imp.imported, layers, package)
            if target is None:
                continue  # reported once, as a module of its own
            if own in pipeline and target == "presentation":
                problems.append(f"(b) pipeline imports presentation: {at}")
            elif own in pipeline and target == "entry":
                problems.append(f"(b) pipeline imports an entry point: {at}")
            elif rank[target] > rank[own]:
                problems.append(f"(c) {own} imports {target}, a later layer: {at}")
            if imp.runs:
                edges[name].add(imp.imported)
    for cycle in find_cycles(edges):
        problems.append(f"(d) import cycle: {' -> '.join(cycle)}")
    return problems


def test_the_package_keeps_the_layer_rule():
    problems = layer_violations(Path(tal_kit.__file__).parent, "tal_kit", LAYERS, PIPELINE, DISPLAY_LIBRARIES)
    assert not problems, "layer rule broken:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------------------------
# The walker itself, on a synthetic package whose violations are known
# ------------------------------------------------------------------------------------------------------------------

TOY_LAYERS = {"shared": ("toy", "toy.config"), "data": ("toy.data",), "model": ("toy.model",),
              "presentation": ("toy.viz",), "entry": ("toy.train", "*.cli")}
TOY_PIPELINE = ("shared", "data", "model")


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "toy"


def _toy_violations(root: Path, files: dict[str, str]) -> list[str]:
    return layer_violations(_write(root, files), "toy", TOY_LAYERS, TOY_PIPELINE, DISPLAY_LIBRARIES)


CLEAN_TOY = {
    "toy/__init__.py": "",
    "toy/config.py": "import json\n",
    "toy/data/__init__.py": "from .grid import Grid\n",
    "toy/data/grid.py": "from toy.config import json\nclass Grid: ...\n",
    "toy/data/cli.py": "import os\n",
    "toy/model/__init__.py": "",
    "toy/model/net.py": "from ..data import grid\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from toy.model.other import Other\n",
    "toy/model/other.py": "from toy.model import net\n",
    "toy/viz/__init__.py": "import matplotlib\n",
    "toy/viz/show.py": "from toy.model.net import *\n",
    "toy/viz/cli.py": "from toy.train import main\n",
    "toy/train.py": "def main():\n    from toy import viz\n",
}


def test_walker_accepts_a_package_that_keeps_the_rule(tmp_path):
    # net -> other only under TYPE_CHECKING, so other -> net is no cycle; viz may use matplotlib; entry points
    # (train, viz/cli) may import everything
    assert _toy_violations(tmp_path, CLEAN_TOY) == []


def test_walker_names_each_kind_of_violation(tmp_path):
    files = dict(CLEAN_TOY)
    files["toy/data/grid.py"] = ("from toy.config import json\n"
                                 "def plot():\n    import plotly.graph_objects as go\n"  # (a), lazily
                                 "def fit():\n    from ..model.other import x\n"  # (c) data -> model, relative
                                 "from toy.data.cli import run\n")  # (b) a package's cli is an entry point
    files["toy/model/other.py"] = "import importlib\nviz = importlib.import_module('toy.viz')\n"  # (b)
    files["toy/data/loop.py"] = "from toy.data import stats\n"
    files["toy/data/stats.py"] = "def f():\n    from . import loop\n"  # (d) a cycle through a lazy import
    problems = _toy_violations(tmp_path, files)
    text = "\n".join(problems)
    assert "(a) display library in the pipeline: toy.data.grid imports plotly (toy/data/grid.py:3)" in text
    assert "(c) data imports model, a later layer: toy.data.grid imports toy.model.other (toy/data/grid.py:5)" in text
    assert "(c) data imports model, a later layer: toy.data.grid imports toy.model (toy/data/grid.py:5)" in text
    assert "(b) pipeline imports presentation: toy.model.other imports toy.viz (toy/model/other.py:2)" in text
    assert "(b) pipeline imports an entry point: toy.data.grid imports toy.data.cli (toy/data/grid.py:6)" in text
    assert "(d) import cycle: toy.data.loop -> toy.data.stats -> toy.data.loop" in text
    assert len(problems) == 6, text


def test_walker_flags_a_module_outside_the_table(tmp_path):
    files = dict(CLEAN_TOY, **{"toy/extras.py": "import os\n"})
    assert _toy_violations(tmp_path, files) == ["toy.extras: in no layer of the rule table (add it to LAYERS)"]


@pytest.mark.parametrize("module, layer", [("tal_kit", "shared"), ("tal_kit.runtime", "shared"),
                                           ("tal_kit.evaluation.metrics", "evaluation"),
                                           ("tal_kit.evaluation.cli", "entry"), ("tal_kit.viz.cli", "entry"),
                                           ("tal_kit.viz.timeline", "presentation"), ("tal_kit.train", "entry"),
                                           ("tal_kit.training.loop", "training"), ("tal_kit.unknown", None)])
def test_rule_table_places_modules(module, layer):
    assert layer_of(module, LAYERS, "tal_kit") == layer
