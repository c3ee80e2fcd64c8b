"""A config dataclass's fields, read from its source file without importing its module.

The config classes carry their CLI help and flag spelling as `option(default, help, **meta)`
(compress.models.options) or `field(metadata=...)`, but most of their modules import torch, which
`compress VERB --help` must not: so the CLI reads the class body with `ast` (checked against the
imported classes by tests/rules/test_cli_options.py); the command builds the real class."""

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
    """The fields of `module:Class`, in declaration order (a base class of the same module's
    first; a field declared again keeps its place, as in dataclasses)."""
    module, _, name = target.partition(":")
    classes = {n.name: n for n in _tree(module).body if isinstance(n, ast.ClassDef)}
    node = classes[name]  # a wrong target is a bug: KeyError names it in the traceback
    out = {
        f.name: f
        for base in node.bases
        if isinstance(base, ast.Name) and base.id in classes
        for f in config_fields(f"{module}:{base.id}")
    }
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            out[stmt.target.id] = _field(stmt, module)
    return tuple(out.values())


def _field(stmt: ast.AnnAssign, module: str) -> ConfigField:
    assert isinstance(stmt.target, ast.Name)
    default: Any = MISSING
    meta: dict[str, Any] = {}
    value = stmt.value
    call = getattr(value.func, "id", None) if isinstance(value, ast.Call) else None
    if isinstance(value, ast.Call) and call in ("field", "option"):
        # option(default, help, factory=..., **meta): models/options.py
        given = zip(("default", "help"), value.args if call == "option" else (), strict=False)
        for key, node in [*given, *((kw.arg, kw.value) for kw in value.keywords)]:
            if key == "default":
                default = _value(node, module)
            elif key in ("default_factory", "factory"):
                default = _FACTORIES[getattr(node, "id", "")]()
            elif key == "metadata":
                meta = ast.literal_eval(node)
            elif call == "option" and key is not None:
                meta[key] = _value(node, module)
    elif value is not None:
        default = _value(value, module)
    return ConfigField(stmt.target.id, ast.unparse(stmt.annotation), default, meta)


def _value(node: ast.expr, module: str) -> Any:
    """A literal, or a constant of `module` with a literal value (followed through imports)."""
    if not isinstance(node, ast.Name):
        return ast.literal_eval(node)
    for stmt in _tree(module).body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == node.id for t in stmt.targets
        ):
            return _value(stmt.value, module)
        names = {a.asname or a.name for a in getattr(stmt, "names", ())}
        if isinstance(stmt, ast.ImportFrom) and stmt.module and node.id in names:
            return _value(node, stmt.module)
    raise NameError(f"{node.id} is not a module constant with a literal value")


@functools.cache
def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)  # imports the parent packages (docstrings only)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
