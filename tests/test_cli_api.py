"""CLI = API: every verb's command calls the `compress.api` function `import compress` users
call (replaced here by a recorder), never a stage function beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import compress.api
from compress.models.errors import CompressError
from tests.conftest import cli


class Called(CompressError):
    """Raised by the recorder: the command reached the API function (nothing runs)."""


def verbs(tmp: Path) -> dict[str, tuple[str, list[str]]]:
    """CLI verb -> (the api function it must call, a command line that reaches it)."""
    out, recipe = str(tmp / "out"), str(tmp / "recipe.yaml")
    return {
        "train": ("train", ["--model", "lenet5", "--out", out]),
        "eval": ("evaluate", ["--model", "lenet5"]),
        "prune": ("prune", ["--model", "lenet5", "--out", out]),
        "sensitivity": ("sensitivity", ["--model", "lenet5", "--out", out]),
        "distill": ("distill", ["-t", "lenet5", "-s", "lenet5", "--out", out]),
        "factorize": ("factorize", ["--model", "lenet5", "--out", out, "--rank", "4"]),
        "quantize": ("quantize", ["--model", "lenet5", "--out", out]),
        "export": ("export_onnx", ["--model", "lenet5", "--out", out]),
        "bench": ("bench", ["--model", "lenet5", "--model", "lenet5"]),
        "doctor": ("doctor", ["--model", "lenet5"]),
        "deploy": ("deploy", ["--model", "lenet5", "--out", out]),
        "predict": ("predict", ["image.png", "--model", str(tmp / "deployed")]),
        "tune": ("tune", [recipe, "--out", out]),
        "run": ("run_recipe", [recipe, "--out", out]),
    }


@pytest.mark.parametrize("verb", sorted(verbs(Path("."))))
def test_every_verb_calls_its_api_function(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    function, args = verbs(tmp_path)[verb]
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def recorder(*a: Any, **kw: Any) -> Any:
        calls.append((a, kw))
        raise Called(f"reached compress.api.{function}")

    monkeypatch.setattr(compress.api, function, recorder)
    result = cli(verb, *args)
    assert f"reached compress.api.{function}" in result.output, result.output
    assert len(calls) == 1
    shown = repr(calls[0])
    assert ("lenet5" in shown) or ("recipe.yaml" in shown) or ("deployed" in shown)


def test_every_api_verb_is_public() -> None:
    """The functions the CLI calls are the ones `import compress` exports."""
    import compress

    for function, _ in verbs(Path(".")).values():
        assert getattr(compress, function) is getattr(compress.api, function)
