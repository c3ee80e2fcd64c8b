"""One writer per output: a lock file `OUT.lock` beside `--out` (also covering train's
`OUT.checkpoint`); a second run is refused at once (exit 2). It holds JSON: PID, host, start
time, the PID's kernel start tick (a reused PID is not the holder), command line. A lock whose
process is gone (same host) is taken over with a warning; another host's can't be checked.
Under torchrun only rank 0 locks; re-entrant within one process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compress.models.disk.durable import check_writable, disk_errors, pid_alive
from compress.models.errors import OutputLockedError

log = logging.getLogger(__name__)

SUFFIX = ".lock"
_CREATING_S = 5.0  # an unreadable lock younger than this is still being written by its owner
_held: dict[str, int] = {}


def lock_path(out: str | Path) -> Path:
    """Where the lock of output `out` lives: `OUT.lock`, a sibling."""
    out = Path(out).absolute()
    return out.with_name(out.name + SUFFIX)


def _start_tick(pid: int) -> int | None:
    """The kernel's start time of `pid` in clock ticks (Linux); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "start_tick": _start_tick(os.getpid()),
        "command": " ".join(sys.argv)[:300],
    }


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _stale(holder: dict[str, Any] | None, path: Path) -> bool:
    """Whether the run named in the lock is certainly gone."""
    if holder is None:  # empty or garbled: its writer died between creating and filling it
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > _CREATING_S
        return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder["pid"]
    if not pid_alive(pid):
        return True
    tick = holder.get("start_tick")
    return tick is not None and _start_tick(pid) not in (None, tick)


def _refusal(out: Path, path: Path, holder: dict[str, Any] | None) -> OutputLockedError:
    who = (
        f"PID {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
        if holder
        else "a run that is starting now"
    )
    return OutputLockedError(
        f"{out} is being written by another run ({who}); refused before any work",
        hint=f"wait for it to finish or choose another --out; if that run is gone, delete {path}",
    )


def _acquire(out: Path, path: Path) -> None:
    check_writable(out)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(path)
                if not _stale(holder, path):
                    raise _refusal(out, path, holder) from None
                path.unlink(missing_ok=True)
                log.warning(
                    "recovered the stale lock %s: %s is no longer running",
                    path,
                    f"PID {holder['pid']} (started {holder.get('started', '?')})"
                    if holder
                    else "its writer",
                )
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(_holder(), f)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return
    raise _refusal(out, path, _read(path))


def _release(path: Path) -> None:
    holder = _read(path)
    if holder is not None and holder.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def output_lock(out: str | Path | None) -> Iterator[Path | None]:
    """Hold the lock of output `out` for the body; yields the lock file, or None where no lock
    is taken (no `out`, or a torchrun rank other than 0)."""
    if out is None or os.environ.get("RANK", "0") != "0":
        yield None
        return
    path = lock_path(out)
    key = str(path)
    if key not in _held:
        _acquire(Path(out), path)
    _held[key] = _held.get(key, 0) + 1
    try:
        yield path
    finally:
        _held[key] -= 1
        if not _held[key]:
            del _held[key]
            _release(path)
