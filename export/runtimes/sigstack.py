"""Keep this thread's signal alternate stack across native calls that replace it: OpenVINO's CPU
plugin (2026.x) leaves installed a `sigaltstack` it already unmapped, so the next `SA_ONSTACK`
signal (all of Python's) is a SIGSEGV; `kept_sigaltstack` restores the previous stack."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SS_DISABLE = 2  # Linux, all architectures we run on


class _StackT(ctypes.Structure):
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.sigaltstack.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
        libc.sigaltstack.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def current_sigaltstack() -> tuple[int, int, int] | None:
    """(address, size, flags) of this thread's alternate signal stack; None where unknown."""
    if _LIBC is None:
        return None
    cur = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(cur)) != 0:
        return None
    return (cur.ss_sp or 0, cur.ss_size, cur.ss_flags)


@contextmanager
def kept_sigaltstack() -> Iterator[None]:
    """Run the body, then put back this thread's alternate signal stack if the body replaced it."""
    before = current_sigaltstack()
    try:
        yield
    finally:
        if _LIBC is not None and before is not None and current_sigaltstack() != before:
            sp, size, flags = before
            old = _StackT(sp or None, SS_DISABLE if flags & SS_DISABLE else 0, size)
            _LIBC.sigaltstack(ctypes.byref(old), None)  # EPERM only while on that stack
