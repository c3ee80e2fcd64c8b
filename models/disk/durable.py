"""Durable writes: a file or an artifact directory appears whole or not at all (temporary sibling,
fsync, one rename; a directory under `--overwrite` is exchanged with the old one: Linux
`renameat2`), and a full disk is one typed DiskFullError naming the path, the bytes needed and
the free space. Temporaries carry the writer's PID (`.NAME.PID.XXXXXXXX.tmp`); those of dead
writers are removed the next time the same path is written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from compress.models.errors import (
    CompressError,
    DiskFullError,
    OutputExistsError,
    OutputNotWritableError,
    ResourceError,
)

log = logging.getLogger(__name__)

KILL_ENV = "COMPRESS_TEST_KILL_AT"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that hide the OSError word it (safetensors: "... (os error 28)").
_FULL_TEXT = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.(?P<kind>tmp|old)$")
_hits: dict[str, int] = {}


def kill_point(label: str) -> None:
    """Test-only hook: SIGKILL this process when $COMPRESS_TEST_KILL_AT is `label` or `label#N`
    (the N-th time). Labels: file:written, file:renamed, dir:filled, dir:swapped."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted or not wanted.startswith(label):
        return
    _hits[label] = _hits.get(label, 0) + 1
    if wanted in (label, f"{label}#{_hits[label]}"):
        os.kill(os.getpid(), signal.SIGKILL)


def is_disk_full(e: BaseException) -> bool:
    """Whether `e` (or an exception it was raised from) says the disk or quota is full."""
    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        if any(t in str(seen).lower() for t in _FULL_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | Path) -> int | None:
    """Free bytes (for this user) on the file system that holds `path` or its nearest ancestor."""
    try:
        return shutil.disk_usage(_existing(Path(path))).free
    except OSError:
        return None


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 10_000_000 else f"{n / 1e6:,.0f} MB"


def disk_full_error(
    path: str | Path, needed: int | None = None, written: int | None = None
) -> DiskFullError:
    """The typed error for a full disk while writing `path`."""
    free = free_bytes(path)
    facts = []
    if needed:
        facts.append(f"needs {_size(needed)}")
    elif written:
        facts.append(f"needs more than the {_size(written)} written")
    if free is not None:
        facts.append(f"{_size(free)} free")
    return DiskFullError(
        f"disk full writing {path}" + (f" ({', '.join(facts)})" if facts else ""),
        hint="free space on that file system or write elsewhere; nothing half-written was "
        "kept and what was there before is intact",
        path=str(path),
        needed=needed,
        free=free,
    )


@contextlib.contextmanager
def disk_errors(path: str | Path, needed: int | None = None) -> Iterator[None]:
    """Raise DiskFullError for a full disk inside the body; other errors pass unchanged."""
    try:
        yield
    except CompressError:
        raise
    except Exception as e:
        if is_disk_full(e):
            raise disk_full_error(path, needed) from e
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return True


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """A fresh hidden sibling of `path` carrying this process's PID."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def remove_stale_temps(path: Path) -> None:
    """Remove the temporaries of `path` left by dead writers; put back an old directory that a
    killed swap left aside (only on systems without an atomic exchange)."""
    with contextlib.suppress(OSError):
        for p in list(path.parent.iterdir()):
            m = _TEMP.match(p.name)
            if not m or m["name"] != path.name or pid_alive(int(m["pid"])):
                continue
            if m["kind"] == "old" and not path.exists():
                p.rename(path)
                log.warning("restored %s from an interrupted replacement", path)
                continue
            _remove(p)
            log.info("removed %s, left by an interrupted write", p)


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's data to the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (a rename) to the device, where the OS supports it."""
    with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
        fsync_path(path)


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    with contextlib.suppress(OSError):
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


@contextlib.contextmanager
def _or_removed(tmp: Path, target: Path, needed: int | None, wrap: bool) -> Iterator[None]:
    """On failure remove `tmp`; raise DiskFullError (or ResourceError for an OSError if `wrap`)."""
    try:
        yield
    except BaseException as e:
        written = _tree_size(tmp) if tmp.exists() else 0
        _remove(tmp)
        if isinstance(e, Exception) and not isinstance(e, CompressError) and is_disk_full(e):
            raise disk_full_error(target, needed, written) from e
        if wrap and isinstance(e, OSError):
            raise ResourceError(f"writing {target} failed: {e}") from e
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, *, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` (fsynced) when the body succeeds."""
    path = Path(path)
    with disk_errors(path, needed):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        tmp = temp_name(path)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    with _or_removed(tmp, path, needed, wrap=False):
        yield tmp
        fsync_path(tmp)
        kill_point("file:written")
        os.replace(tmp, path)
        kill_point("file:renamed")
        fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see atomic_file)."""
    with atomic_file(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (see atomic_file)."""
    return write_bytes(path, text.encode())


def check_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse an existing non-empty output directory unless `overwrite`; call before long work."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(
            f"output {out} exists and is not empty",
            hint="pass --overwrite to replace it, or choose another --out",
        )
    check_writable(out)
    return out


def check_writable(out: str | Path, option: str = "--out") -> None:
    """Fail before any work when nothing can be written where `out` would go (probe the nearest
    existing ancestor with an empty directory, removed at once); `option` names the path."""
    out = Path(out)
    anchor = _existing(out.parent)
    hint = f"choose an {option} in a directory you can write to"
    if not anchor.is_dir():
        raise OutputNotWritableError(
            f"cannot write {option} {out}: {anchor} is a file, not a directory", hint=hint
        )
    try:
        probe = tempfile.mkdtemp(prefix=".compress-probe-", dir=anchor)
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(out) from e
        raise OutputNotWritableError(
            f"cannot write {option} {out}: {anchor} refuses new files ({e.strerror or e})",
            hint=hint,
        ) from None
    os.rmdir(probe)


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `out` in one rename."""
    out = check_out_dir(out, overwrite)
    try:
        with disk_errors(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(out)
            tmp = temp_name(out)
            tmp.mkdir()
    except OSError as e:
        raise ResourceError(f"writing {out} failed: {e}") from e
    with _or_removed(tmp, out, None, wrap=True):
        yield tmp
        for p in [*tmp.rglob("*"), tmp]:
            if p.is_file() or p.is_dir():
                fsync_path(p)
        kill_point("dir:filled")
        _install(tmp, out)
        fsync_dir(out.parent)


def _install(tmp: Path, out: Path) -> None:
    """Put the complete `tmp` at `out`; an existing `out` is swapped out, then removed."""
    if not out.exists():
        tmp.rename(out)
        return
    if out.is_dir() and not out.is_symlink() and _exchange(tmp, out):
        kill_point("dir:swapped")  # `tmp` now holds the old directory
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = temp_name(out, "old")
    out.rename(old)
    kill_point("dir:swapped")
    tmp.rename(out)
    _remove(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
