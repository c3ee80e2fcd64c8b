"""`option(default, help)`: a config field that carries its own CLI help (and flag spelling).

Config dataclasses are the single source of the CLI's options (`compress.cli.fields` reads them).
Metadata keys: `flag` (another spelling, `--x/--no-x`, or a tuple with a short alias),
`show_default`, `cli` (False: no flag; or repeat, csv, csv-int, pairs), `shape` (NAME=N wording).
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
