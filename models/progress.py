"""How library work that takes a while (a weights download) reports progress: told the bytes
done so far, then closed. The default logs a line every 10 %; the CLI installs a live bar.
Import-light on purpose: the CLI installs its bar at start-up, even for `--help`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

# The lines belong to the download they report.
log = logging.getLogger("compress.models.weights.download")


class Bar(Protocol):
    """What a progress factory returns: told the bytes received so far, then closed."""

    def update(self, done: int) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str, int | None], Bar]  # (label, total bytes or None) -> Bar


class ProgressBar:
    """Default progress: a log line every 10 %; `update(done)` then `close()`."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total, self._next = label, total, 0.1

    def update(self, done: int) -> None:
        if self.total and done / self.total >= self._next:
            log.info("%s: %d %%", self.label, int(100 * done / self.total))
            self._next += 0.1

    def close(self) -> None:
        pass


_factory: ProgressFactory = ProgressBar


def set_progress_factory(factory: ProgressFactory | None) -> None:
    """Let the CLI show a progress bar (None restores the log lines)."""
    global _factory
    _factory = factory or ProgressBar


def progress_bar(label: str, total: int | None) -> Bar:
    """A bar from the installed factory."""
    return _factory(label, total)
