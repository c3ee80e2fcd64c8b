"""`--out` where nothing can be written: one clear line, a documented exit code, nothing left
behind, and before any training; a file that disappears or is refused midway: one line too.
(Tests may run as root, for whom a chmod-ed directory is writable: the cases here are ones root
can't write either.)"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.errors import EXIT_CODES, OutputNotWritableError, UsageError
from tests.conftest import FASHION_MINI

ROOT = Path(__file__).resolve().parent.parent
DATA = ["--data-dir", str(FASHION_MINI)]
VERBS = {
    "train": ["train", "-m", "lenet5", "--epochs", "1", *DATA],
    "prune": ["prune", "-m", "lenet5", "--weights", "random", "--ratio", "0.5"],
    "sensitivity": ["sensitivity", "-m", "lenet5", "--weights", "random"],
    "export": ["export", "-m", "lenet5", "--weights", "random"],
    "quantize": ["quantize", "-m", "lenet5", "--weights", "random", *DATA],
    "distill": ["distill", "-t", "lenet5", "--teacher-weights", "random", "-s", "lenet5"],
    "run": ["run", str(ROOT / "recipes" / "lenet5-fashion.yaml")],
    "tune": ["tune", str(ROOT / "recipes" / "lenet5-search.yaml")],
}


def _one_clear_line(r, code: int, text: str) -> None:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in " ".join(r.output.split()), r.output


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_out_under_proc_is_a_usage_error(verb, monkeypatch):
    """Refused before any work: no model is built and no data loader made before the check."""
    import torch

    started: list[str] = []

    def work(what: str):
        def record(*a, **k):
            started.append(what)
            raise AssertionError(f"{what} before the --out check")

        return record

    monkeypatch.setattr(torch.nn.Module, "__init__", work("a model built"))
    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", work("data loaded"))
    r = CliRunner().invoke(app, [*VERBS[verb], "--out", "/proc/compress-test/out"])
    _one_clear_line(r, UsageError.exit_code, "cannot write --out /proc/compress-test/out")
    assert started == []


@pytest.mark.parametrize("verb", ["train", "prune", "run"])
def test_out_below_a_regular_file_is_a_usage_error(verb, tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a directory")
    out = tmp_path / "notes.txt" / "sub" / "out"
    r = CliRunner().invoke(app, [*VERBS[verb], "--out", str(out)])
    _one_clear_line(r, 2, "is a file, not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_read_only_file_system_is_refused_before_work(tmp_path, monkeypatch):
    """EROFS (a read-only mount): refused by the probe, before the model or data load."""
    import tempfile

    from compress.models.artifacts.artifact import check_writable

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(OutputNotWritableError, match=r"refuses new files.*Read-only"):
        check_writable(tmp_path / "out")
    r = CliRunner().invoke(app, [*VERBS["train"], "--out", str(tmp_path / "out")])
    _one_clear_line(r, 2, "Read-only file system")
    assert list(tmp_path.iterdir()) == []


def test_a_write_refused_midway_is_a_resource_error(tmp_path, monkeypatch):
    """An OSError like EACCES after the early check (permissions changed, a full quota) is the
    file system's answer, not a bug: one line and exit code 6."""
    import compress.api as stage  # what the CLI calls

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(stage, "train", denied)
    r = CliRunner().invoke(app, [*VERBS["train"], "--out", str(tmp_path / "out")])
    _one_clear_line(r, 6, "permission denied")
    assert 6 in EXIT_CODES and "file system" in EXIT_CODES[6]


@pytest.mark.parametrize("action", ["read", "write"])
def test_a_file_gone_midway_is_invalid_input(action, tmp_path, monkeypatch):
    """The input artifact deleted while the verb runs, or the folder being written into: the
    OS's FileNotFoundError becomes one line naming the file and exit code 3, not a bug report."""
    import compress.api as stage  # what the CLI calls

    (tmp_path / "art").mkdir()
    gone = tmp_path / "art" / "model.safetensors"
    gone.write_bytes(b"weights")

    def midway(*a, **k):
        gone.unlink()
        (tmp_path / "art").rmdir()
        return gone.read_bytes() if action == "read" else gone.write_bytes(b"new")

    monkeypatch.setattr(stage, "train", midway)
    r = CliRunner().invoke(app, [*VERBS["train"], "--out", str(tmp_path / "out")])
    _one_clear_line(r, 3, f"{gone}: no such file or directory (moved or deleted")


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (
            OSError(errno.EIO, "Input/output error", "/data/x.idx"),
            6,
            "/data/x.idx: Input/output error",
        ),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data"), 3, "/data: is a directory"),
        (OSError(errno.ENOSPC, "No space left on device"), 7, "disk full"),
        (OSError("a library's own state"), 1, "internal error"),  # no errno: not a file's fault
        (FileNotFoundError(errno.ENOENT, "gone"), 1, "internal error"),  # no file named
        (
            FileNotFoundError(errno.ENOENT, "gone", str(ROOT / "compress" / "x.json")),
            1,
            "internal error",
        ),
    ],
    ids=["io-error", "is-a-directory", "disk-full", "no-errno", "no-file", "our-own-file"],
)
def test_os_errors_map_to_exit_codes(error, code, text, tmp_path, monkeypatch):
    """A user's file: 3 (gone, wrong kind), 7 (disk full) or 6 (the file system's answer); an
    OSError that names no file, or a file of compress itself, stays a bug (exit 1)."""
    import compress.api as stage  # what the CLI calls

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(stage, "train", fail)
    r = CliRunner().invoke(app, [*VERBS["train"], "--out", str(tmp_path / "out")])
    assert r.exit_code == code, r.output
    assert text in " ".join(r.output.split()) and "Traceback" not in r.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["eval", "-m", "lenet5", "--weights", "random", *DATA, "--json"], "--json"),
        (["bench", "-m", "lenet5", "--weights", "random", "--md"], "--md"),
        (["info", "ARTIFACT", "--json"], "--json"),
    ],
)
def test_report_files_that_cannot_be_written_are_refused_first(args, option, tmp_path, monkeypatch):
    import compress.api

    def never(*a, **k):
        raise AssertionError("the work started before the output check")

    monkeypatch.setattr(compress.api, "evaluate", never)
    monkeypatch.setattr(compress.api, "bench", never)
    args = [str(tmp_path) if a == "ARTIFACT" else a for a in args]
    r = CliRunner().invoke(app, [*args, "/proc/compress-test/r.out"])
    _one_clear_line(r, 2, f"cannot write {option} /proc/compress-test/r.out")
