"""The layer DAG the folders promise, read from the source (imports inside functions and under
TYPE_CHECKING included): models/ at the bottom, export/ on models/ only, compress/ on top (the
first two install as compress.models and compress.export), each part's subpackages ranked, and
inside compress/ distributed <- training <- distillation <- pruning, quantization <- stages <-
pipeline <- cli. No import cycles between modules, no private name crossing a module, and
`import compress` stays cheap (heavy libraries load only when a verb needs them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Import-name prefix -> folder: models/ and export/ install as compress.models and compress.export
# (compress/models and compress/export are links to them), so a user's own `models` can't shadow them.
FOLDERS = {"compress.models": "models", "compress.export": "export", "compress": "compress"}
LINKS = {"models", "export"}  # entries of compress/ that are the links
# Rank of each part; a module may import its own part or a part of lower rank, nothing else
# (pruning, quantization and factorization share a rank: none imports another).
RANKS = {
    # models/ (installed as compress.models): the ground floor
    "compress.models.errors": 0,
    "compress.models.progress": 0,
    "compress.models.jsontypes": 0,
    "compress.models.options": 1,  # option(): config fields with their CLI help and checks
    "compress.models.notes": 0,  # Note(text, severity)
    "compress.models.disk": 1,  # durable writes, the output lock
    "compress.models.weights": 2,  # safe reading, verified downloads
    "compress.models.zoo": 3,  # registry, specs, families, published weights
    "compress.models.data": 4,
    "compress.models.artifacts": 4,  # card format, structure, --model/--weights resolution
    "compress.models": 5,  # models/__init__.py: the lazy names
    # export/ (installed as compress.export): on models/ only
    "compress.export.environment": 10,  # the machine: CPU features, versions
    "compress.export.onnx": 11,  # conversion, the checked file, parity
    "compress.export.runtimes": 12,  # one Runner interface, sessions, input size
    "compress.export.bench": 13,  # timing loop, cases, baselines, reports
    "compress.export.doctor": 14,
    "compress.export": 15,
    # compress/: the stages on top
    "compress.distributed": 20,
    "compress.training": 21,
    "compress.distillation": 22,
    "compress.factorization": 23,
    "compress.pruning": 23,
    "compress.quantization": 23,
    "compress.stages": 24,
    "compress.pipeline": 25,
    "compress": 26,  # compress/__init__.py: the lazy public API over stages and pipeline
    "compress.cli": 27,
    "compress.__main__": 28,
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(["compress", *parts] if parts[0] in LINKS else parts)


def part_of(module: str) -> str:
    """The layer a module belongs to: the longest prefix in RANKS."""
    pieces = module.split(".")
    for n in range(len(pieces), 0, -1):
        if ".".join(pieces[:n]) in RANKS:
            return ".".join(pieces[:n])
    raise KeyError(module)


def all_modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for folder in FOLDERS.values():
        for p in sorted((root / folder).rglob("*.py")):
            if folder != "compress" or p.relative_to(root / folder).parts[0] not in LINKS:
                found[module_name(p, root)] = p
    return found


def _source(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: set[str]) -> tuple[set[str], list[str]]:
    """(project modules imported anywhere in the file, private names imported from others)."""
    out: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "compress":
                    out.add(a.name)
                    if a.asname:
                        aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            src = _source(module, node, path.name == "__init__.py")
            if src.split(".")[0] != "compress":
                continue
            for a in node.names:
                if f"{src}.{a.name}" in known:  # a submodule
                    out.add(f"{src}.{a.name}")
                    aliases[a.asname or a.name] = f"{src}.{a.name}"
                else:
                    out.add(src)
                    if a.name.startswith("_"):
                        private.append(f"{src}.{a.name}")
    for node in ast.walk(tree):  # `alias._name` on an imported project module
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            private.append(f"{aliases[node.value.id]}.{node.attr}")
    return {m for m in out if m in known and m != module}, private


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    mods = all_modules(root)
    edges, private = {}, {}
    for m, p in mods.items():
        edges[m], private[m] = imports_of(m, p, set(mods))
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def order_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(edges.items()):
        pm = part_of(m)
        for t in sorted(targets):
            pt = part_of(t)
            if pt != pm and RANKS[pt] >= RANKS[pm]:
                bad.append(f"{m} -> {t}")
    return bad


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    return import_graph()


def test_every_module_has_a_layer(graph) -> None:
    edges, _ = graph
    for m in edges:
        assert part_of(m) in RANKS


def test_no_layer_imports_upward_or_sideways(graph) -> None:
    assert order_violations(graph[0]) == []


def test_no_import_cycles(graph) -> None:
    assert cycles(graph[0]) == []


def test_no_private_name_crosses_a_module(graph) -> None:
    assert {m: p for m, p in graph[1].items() if p} == {}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


def test_the_checker_sees_lazy_imports_cycles_and_private_names(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "models/__init__.py": "",
            "models/a.py": "def f():\n    from compress.training import fit\n",
            "export/__init__.py": "",
            "export/b.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from compress.export.c import X\n",
            "export/c.py": "from compress.export import b\nfrom compress.models.a import _hidden\n",
            "export/d.py": "from compress.export import c as cc\ny = cc._z\n",
            "compress/__init__.py": "",
            "compress/training/__init__.py": "",
            "compress/training/fit.py": "",
            "compress/pruning/__init__.py": "",
            "compress/pruning/p.py": "from ..quantization.q import Q\n",
            "compress/quantization/__init__.py": "",
            "compress/quantization/q.py": "",
        },
    )
    edges, private = import_graph(root)
    assert "compress.training.fit" in edges["compress.models.a"]
    assert order_violations(edges) == [
        "compress.models.a -> compress.training.fit",
        "compress.pruning.p -> compress.quantization.q",
    ]
    assert cycles(edges) == [["compress.export.b", "compress.export.c"]]
    assert private["compress.export.c"] == ["compress.models.a._hidden"]
    assert private["compress.export.d"] == ["compress.export.c._z"]


HEAVY = "{'torch', 'torch_pruning', 'onnxruntime', 'optuna', 'matplotlib', 'onnx'}"


@pytest.mark.parametrize(
    ("imports", "heavy"),
    [
        ("compress", HEAVY),
        ("compress.cli.app", "{'torch_pruning', 'onnxruntime', 'optuna', 'matplotlib', 'onnx'}"),
    ],
)
def test_import_compress_is_cheap(imports: str, heavy: str) -> None:
    code = f"import sys, {imports}\nprint(sorted({heavy} & set(sys.modules)))\n"
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert r.stdout.strip() == "[]"
