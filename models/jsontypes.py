"""The one type for untyped mappings: a JSON object as written to or read from disk.

Results inside the library are frozen dataclasses; only their serialized form (a card, a
report, a checkpoint's state, a child process's JSON on stdout) is a plain dict, and that dict
is spelled `JsonObject` so the boundary is visible in every signature.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object as written to or read from disk."""
