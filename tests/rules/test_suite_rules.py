"""Rules the test suite keeps: every `pytest.raises` of an error names the message it expects
(`match=`), and every test that needs CUDA carries the `gpu` marker."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# Interrupts carry no message: what they raise is the whole check.
NO_MESSAGE = {"KeyboardInterrupt"}


def _raises_without_match(tree: ast.AST) -> list[int]:
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "raises"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "pytest"
            and not any(k.arg == "match" for k in node.keywords)
            and not (
                node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in NO_MESSAGE
            )
        ):
            bad.append(node.lineno)
    return bad


def _cuda_tests_without_gpu_mark(tree: ast.AST) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test"):
            continue
        decorators = [ast.unparse(d) for d in node.decorator_list]
        needs_cuda = any("skipif" in d and "cuda" in d for d in decorators)
        if needs_cuda and "pytest.mark.gpu" not in decorators:
            bad.append(node.name)
    return bad


def test_every_raises_names_its_message() -> None:
    found = {
        str(p.relative_to(TESTS)): lines
        for p in sorted(TESTS.rglob("test_*.py"))
        if (lines := _raises_without_match(ast.parse(p.read_text())))
    }
    assert found == {}


def test_every_cuda_test_is_marked_gpu() -> None:
    found = {
        str(p.relative_to(TESTS)): names
        for p in sorted(TESTS.rglob("test_*.py"))
        if (names := _cuda_tests_without_gpu_mark(ast.parse(p.read_text())))
    }
    assert found == {}


def test_the_rules_catch_offenders() -> None:
    code = (
        "import pytest, torch\n"
        "def test_a():\n    with pytest.raises(ValueError):\n        f()\n"
        "def test_b():\n    with pytest.raises(KeyboardInterrupt):\n        f()\n"
        "@pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\ndef test_c():\n    pass\n"
    )
    tree = ast.parse(code)
    assert _raises_without_match(tree) == [3]
    assert _cuda_tests_without_gpu_mark(tree) == ["test_c"]
