"""Running an ONNX file once in a child process, so a runtime crash costs a typed error, not the
command: `probe_in_subprocess` (parent), `probe_main` (child), `run_child` (any such child)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from compress.export.runtimes.runner import create_session
from compress.models.errors import InvalidInputError, UnsupportedError, UsageError


@dataclass(frozen=True)
class ProbeReport:
    """One inference in a child process: the providers it got, and how long it took."""

    providers: list[str]
    fallback: bool
    create_seconds: float
    run_seconds: float
    output_shape: list[int]


def probe_in_subprocess(
    path: str | Path, runtime: str = "ort-cpu", threads: int | None = None, timeout: float = 300
) -> ProbeReport:
    """Open and run `path` once in a child process; its report, or a typed error if it failed."""
    args = [str(path), runtime, str(threads or 0)]
    try:
        proc = run_child("compress.export.runtimes.probe", args, timeout)
    except subprocess.TimeoutExpired as e:
        raise UnsupportedError(
            f"onnxruntime did not finish one inference of {path} in {timeout:.0f} s"
        ) from e
    return interpret_probe(path, proc.returncode, proc.stdout, proc.stderr)


def interpret_probe(path: str | Path, returncode: int, stdout: str, stderr: str) -> ProbeReport:
    """Map a probe child's exit to a report or a typed error."""
    last = last_line(stdout)
    if returncode == 0 and last.startswith("{"):
        return ProbeReport(**json.loads(last))
    if returncode < 0:
        raise InvalidInputError(
            f"onnxruntime crashed ({signal_name(returncode)}) loading or running {path}",
            hint="the file is malformed or hits a runtime bug; `compress doctor` lists its ops",
        )
    if last.startswith("{"):
        err = json.loads(last)
        cls = {"UnsupportedError": UnsupportedError, "UsageError": UsageError}.get(
            err.get("type", ""), InvalidInputError
        )
        raise cls(err.get("message", "probe failed"), hint=err.get("hint"))
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    raise InvalidInputError(f"probing {path} failed (exit {returncode}): {tail[:300]}")


def last_line(stdout: str) -> str:
    return stdout.strip().splitlines()[-1] if stdout.strip() else ""


def signal_name(returncode: int) -> str:
    """The name of the signal that killed a child (negative exit code)."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_child(module: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m module args` with this checkout on PYTHONPATH, output captured as text."""
    env = {**os.environ, "PYTHONPATH": child_pythonpath()}
    cmd = [*child_python(module), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def child_python(module: str) -> list[str]:
    """`python -m module` without the current directory first on sys.path, so a folder named
    like our packages where the user runs the command can't stand in for the child's code."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module]
    boot = "import runpy, sys; sys.path.pop(0); "
    boot += f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", boot]


def child_pythonpath() -> str:
    """PYTHONPATH for a child: this checkout first, then what the parent had."""
    root = str(Path(__file__).absolute().parents[3])  # the folder holding `compress`
    extra = os.environ.get("PYTHONPATH")
    return root + (os.pathsep + extra if extra else "")


def probe_main(argv: list[str]) -> int:
    """Child side of `probe_in_subprocess`: one session, one synthetic inference, JSON out."""
    from compress.models.errors import CompressError

    path, runtime, threads = argv[0], argv[1], int(argv[2]) or None
    try:
        runner = create_session(path, runtime, threads)
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in runner.input_shape]
        t0 = time.perf_counter()
        out = runner.run(np.zeros(shape, dtype=runner.input_dtype))
        report = ProbeReport(
            runner.providers,
            runner.fallback,
            runner.create_seconds,
            time.perf_counter() - t0,
            list(out.shape),
        )
    except CompressError as e:
        kind = next(
            c.__name__
            for c in (UnsupportedError, UsageError, InvalidInputError, CompressError)
            if isinstance(e, c)
        )
        print(json.dumps({"type": kind, "message": e.args[0], "hint": e.hint}))
        return 1
    print(json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(probe_main(sys.argv[1:]))
