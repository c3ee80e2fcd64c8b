"""`option(default, help)`: a config field that carries its own CLI help (and flag spelling).

Config dataclasses (PruneConfig, TrainConfig, ...) are the single source of the CLI's options:
`compress.cli.fields` reads each field's help and metadata from the class body, and the CLI
generates its flags from them. `option` is `dataclasses.field` with that metadata spelled short.
Metadata keys: `flag` (another spelling, a `--x/--no-x` pair, or a tuple with a short alias),
`show_default`, `cli` (False: no flag, or the shape of a list option: repeat, csv, csv-int,
pairs), `shape` (the wording of a NAME=N error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, field
from typing import Any


def option(
    default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **meta: Any
) -> Any:
    """A dataclass field with `help` (and any other CLI metadata) attached."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})
