"""A note a result carries for the user, with its severity set where it is written, so the CLI
colours it by what it is instead of guessing from its words; JSON gets the text alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Note:
    """`text` as printed; `severity`: info (context), warning (a surprise: slower, fell back,
    not what was asked for), error (a case failed)."""

    text: str
    severity: Severity = "info"

    def __str__(self) -> str:
        return self.text


def texts(notes: list[Note]) -> list[str]:
    """The notes as JSON writes them: their text."""
    return [n.text for n in notes]
