"""The layer DAG the folders promise: models/ at the bottom, export/ on models/ only, compress/
on top; and `import compress` stays cheap (heavy libraries load only when a verb needs them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"models": {"export", "compress"}, "export": {"compress"}}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere (module level or inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_upward(layer: str) -> None:
    bad = {
        str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[layer])
        for p in sorted((ROOT / layer).rglob("*.py"))
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from compress.training.fit import fit\n    import export.bench\n")
    assert imported_packages(f) == {"compress", "export"}


def test_import_compress_is_cheap() -> None:
    code = (
        "import sys, compress, compress.cli.app\n"
        "heavy = {'torch_pruning', 'onnxruntime', 'optuna', 'matplotlib', 'onnx'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert r.stdout.strip() == "[]"
