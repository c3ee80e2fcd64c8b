"""`option(default, help)`: a config field that carries its own CLI help (and flag spelling).

Config dataclasses are the single source of the CLI's options (`compress.cli.fields` reads them).
Metadata keys: `flag` (another spelling, `--x/--no-x`, or a tuple with a short alias),
`show_default`, `cli` (False: no flag; or repeat, csv, csv-int, pairs), `shape` (NAME=N wording),
and the checks of :func:`check_options`: bounds `min`, `above`, `max`, `below` and `choices`
(not pydantic's ge/gt/le/lt: recipes validate configs with pydantic, which would check those
first, in its own words).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import MISSING, field, fields
from typing import Any

from compress.models.errors import UsageError

_SIGNS = {"min": ">=", "above": ">", "max": "<=", "below": "<"}
_TESTS = dict(zip(_SIGNS, (operator.ge, operator.gt, operator.le, operator.lt), strict=True))


def option(
    default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **meta: Any
) -> Any:
    """A dataclass field with `help` and its CLI metadata; `min`, `above`, `max`, `below` and
    `choices` are checked by `check_options`, which says `hint` with the error."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def long_flag(name: str, meta: Mapping[str, Any]) -> str:
    """The long flag of a field: metadata "flag" (its first spelling), else --field-name."""
    flag = meta.get("flag")
    first = flag[0] if isinstance(flag, (list, tuple)) else flag
    return str(first).split("/")[0] if first else "--" + name.replace("_", "-")


def check_options(cfg: Any, *, flags: bool = False) -> None:
    """UsageError for a field (not None) outside its declared bounds (finite numbers only) or
    choices; the message starts with the field's name (`flags`: its flag, where it has one)."""
    for f in fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata
        if value is None:
            continue
        name = long_flag(f.name, meta) if flags and meta.get("cli") is not False else f.name
        bounds = {k: meta[k] for k in _SIGNS if k in meta}
        if "choices" in meta and value not in meta["choices"]:
            raise UsageError(
                f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}",
                hint=meta.get("hint"),
            )
        inside = all(_TESTS[k](value, b) for k, b in bounds.items())
        if bounds and not (math.isfinite(value) and inside):
            raise UsageError(f"{name} must be {_range(bounds)}, got {value}", hint=meta.get("hint"))


def _range(bounds: dict[str, Any]) -> str:
    """`>= 1`, or an interval such as `[0, 1)`."""
    if len(bounds) == 1:
        ((key, bound),) = bounds.items()
        return f"{_SIGNS[key]} {bound}"
    low = f"[{bounds['min']}" if "min" in bounds else f"({bounds['above']}"
    high = f"{bounds['max']}]" if "max" in bounds else f"{bounds['below']})"
    return f"in {low}, {high}"
