"""A config dataclass's fields, read from its source file without importing its module.

The config classes (PruneConfig, QuantizeConfig, ...) carry their CLI help and flag spelling as
`option(default, help, **meta)` (compress.models.options) or `field(metadata=...)`, but most of their modules import torch, which `compress VERB --help` must
not. So the CLI reads each field's name, type, default and metadata from the class body with
`ast`; the command itself builds the real class. tests/rules/test_cli_options.py checks this reading
against the imported classes.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

_FACTORIES = {"list": list, "dict": dict, "tuple": tuple}


@dataclass(frozen=True)
class ConfigField:
    """One field as declared: `annotation` as written, `default` (MISSING when required)."""

    name: str
    annotation: str
    default: Any
    meta: dict[str, Any]


@functools.cache
def config_fields(target: str) -> tuple[ConfigField, ...]:
    """The fields of `module:Class`, in declaration order."""
    module, _, name = target.partition(":")
    scope = _Scope(module)
    node = next(
        n for n in scope.tree.body if isinstance(n, ast.ClassDef) and n.name == name
    )  # a wrong target is a bug: StopIteration names it in the traceback
    return tuple(
        _field(stmt, scope)
        for stmt in node.body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
    )


def _field(stmt: ast.AnnAssign, scope: _Scope) -> ConfigField:
    assert isinstance(stmt.target, ast.Name)
    default: Any = MISSING
    meta: dict[str, Any] = {}
    value = stmt.value
    call = getattr(value.func, "id", None) if isinstance(value, ast.Call) else None
    if isinstance(value, ast.Call) and call in ("field", "option"):
        if call == "option":  # option(default, help, factory=..., **meta): models/options.py
            for node, key in zip(value.args, ("default", "help"), strict=False):
                if key == "default":
                    default = scope.value(node)
                else:
                    meta["help"] = ast.literal_eval(node)
        for kw in value.keywords:
            if kw.arg == "default":
                default = scope.value(kw.value)
            elif kw.arg in ("default_factory", "factory"):
                default = _FACTORIES[getattr(kw.value, "id", "")]()
            elif kw.arg == "metadata":
                meta = ast.literal_eval(kw.value)
            elif call == "option" and kw.arg is not None:
                meta[kw.arg] = ast.literal_eval(kw.value)
    elif value is not None:
        default = scope.value(value)
    return ConfigField(stmt.target.id, ast.unparse(stmt.annotation), default, meta)


class _Scope:
    """A module's parsed source: literal values of its constants, followed through imports."""

    def __init__(self, module: str) -> None:
        spec = importlib.util.find_spec(module)  # imports the parent packages (docstrings only)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(module)
        self.tree = _parse(spec.origin)

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Name):
            return self.constant(node.id)
        return ast.literal_eval(node)

    def constant(self, name: str) -> Any:
        for stmt in self.tree.body:
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in stmt.targets
            ):
                return self.value(stmt.value)
            if isinstance(stmt, ast.ImportFrom) and stmt.module and name in _names(stmt):
                return _Scope(stmt.module).constant(name)
        raise NameError(f"{name} is not a module constant with a literal value")


def _names(stmt: ast.ImportFrom) -> set[str]:
    return {a.asname or a.name for a in stmt.names}


@functools.cache
def _parse(path: str) -> ast.Module:
    return ast.parse(Path(path).read_text(encoding="utf-8"))
