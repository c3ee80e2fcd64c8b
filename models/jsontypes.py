"""The one type for untyped mappings: a JSON object as written to or read from disk (a card,
a report, a child process's stdout); results inside the library are frozen dataclasses."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
