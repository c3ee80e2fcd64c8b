"""Faults of the machine (issue #30): a full disk at each write site, a save killed with SIGKILL
between two writes (the COMPRESS_TEST_KILL_AT hook of compress.models.disk.durable, no timing race), two runs
on one --out, and damaged files of our own making. Each asserts the exit code, the one-line
message, that no temporary is left, and that the previous good state still loads and scores the
same. The kill, concurrency and damaged-artifact cases are in tests/test_faults_kill.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.errors import DiskFullError, OutputLockedError
from tests.conftest import MINI

TRAIN = ["train", "-m", "lenet5", "--epochs", "1", "--limit", "128", "--data-dir", MINI]


def leftovers(root: Path) -> list[str]:
    """Temporaries, swapped-out directories and locks under `root` (none may survive)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith((".tmp", ".old", ".part", ".lock"))
    )


def top1(path: Path, bundle) -> float:
    from compress.models.artifacts.artifact import load_model
    from compress.stages.train import final_metrics

    model, _ = load_model(path)
    return float(final_metrics(model, bundle, None)["test"]["top1"])


def one_error_line(r, code: int, text: str) -> None:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in " ".join(r.output.split()), r.output


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def half_then_full(path_arg: int):
    """A writer that writes 100 bytes to its target, then finds the disk full."""

    def write(*args, **kwargs):
        with open(str(args[path_arg]), "wb") as f:
            f.write(b"\0" * 100)
        no_space()

    return write


@pytest.fixture
def good(trained_lenet, tmp_path, bundle) -> tuple[Path, float, str]:
    """A copy of a trained artifact (the previous good state), its accuracy and content hash."""
    from compress.models.artifacts.artifact import read_card

    out = tmp_path / "art"
    shutil.copytree(trained_lenet, out)
    return out, top1(out, bundle), read_card(out).content_hash


@pytest.mark.parametrize(
    ("site", "patch", "argv"),
    [
        ("safetensors", ("safetensors.torch.save_file", 1), TRAIN),
        ("onnx", ("onnx.save_model", 1), ["export", "--parity-samples", "4"]),
    ],
)
def test_disk_full_writing_an_artifact_keeps_the_previous_one(
    site, patch, argv, good, bundle, monkeypatch
):
    out, acc, digest = good
    target = out.parent / "new" if site == "onnx" else out
    if site == "onnx":
        shutil.copytree(out, target)
    monkeypatch.setattr(patch[0], half_then_full(patch[1]))
    r = CliRunner().invoke(app, [*argv, "-m", str(out), "--out", str(target), "--overwrite"])
    one_error_line(r, 7, f"disk full writing {target}")
    assert "free" in r.output and "intact" in r.output
    assert leftovers(out.parent) == []
    from compress.models.artifacts.artifact import read_card

    assert read_card(target).content_hash == digest and top1(target, bundle) == acc


def test_disk_full_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """torch's zip writer hides the OSError ("unexpected pos"); it still reads as disk full."""
    import builtins

    import torch

    from compress.training import checkpoint as ck

    path = tmp_path / "run.checkpoint" / "last.pt"
    first = {"epoch": 0, "model": {"w": torch.arange(5000.0)}}
    ck.save_checkpoint(path, first)

    def full_file(name, mode="r", *a, **k):
        f = builtins.open(name, mode, *a, **k)  # noqa: SIM115 - returned to the caller's with
        real, budget = f.write, [4096]

        def write(data):
            budget[0] -= len(data)
            if budget[0] < 0:
                no_space()
            return real(data)

        f.write = write
        return f

    monkeypatch.setattr(ck, "open", full_file, raising=False)
    with pytest.raises(DiskFullError, match=r"disk full writing .*last\.pt \(needs 80,000 bytes"):
        ck.save_checkpoint(path, {"epoch": 1, "model": {"w": torch.zeros(20000)}})
    assert leftovers(tmp_path) == []
    assert torch.equal(ck.load_checkpoint(path)["model"]["w"], first["model"]["w"])


def test_disk_full_at_the_first_checkpoint_leaves_nothing_behind(tmp_path, monkeypatch):
    """The issue's reproduction through the CLI: exit 7, one line, and neither a temporary nor
    the (empty) checkpoint folder left where the run was to write."""
    from compress.training import checkpoint as ck

    monkeypatch.setattr(ck, "open", lambda *a, **k: no_space(), raising=False)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, [*TRAIN, "--out", str(out)])
    one_error_line(r, 7, "disk full writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", ["json", "recipe", "cache"])
def test_disk_full_writing_a_file_keeps_the_previous_one(writer, tmp_path, monkeypatch):
    """--json reports, recipes (tune's best-*.yaml) and the weight cache: the old file stays."""
    from compress.cli.output import write_json
    from compress.models.weights import download
    from compress.pipeline.recipe import Recipe, dump_recipe

    path = tmp_path / ("w.pth" if writer == "cache" else "f.txt")
    path.write_text("previous")
    monkeypatch.setattr(Path, "write_bytes", half_then_full(0))
    with pytest.raises(DiskFullError, match=f"disk full writing {path}"):
        if writer == "json":
            write_json(str(path), {"a": 1})
        elif writer == "recipe":
            dump_recipe(Recipe(name="r", model="lenet5", stages=[]), path)
        else:
            monkeypatch.setattr(download, "_transfer", lambda url, out, name: no_space())
            download.download("http://mirror.invalid/w.pth", path, "00")
    assert path.read_text() == "previous" and leftovers(tmp_path) == []


def test_disk_full_before_any_work_is_the_same_error(tmp_path, monkeypatch):
    """The early probe of --out finds the disk full: exit 7, nothing trained or left."""
    import tempfile

    monkeypatch.setattr(tempfile, "mkdtemp", no_space)
    r = CliRunner().invoke(app, [*TRAIN, "--out", str(tmp_path / "out")])
    one_error_line(r, 7, f"disk full writing {tmp_path / 'out'}")
    assert list(tmp_path.iterdir()) == []


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_lock_of_a_live_run_is_refused_and_a_dead_ones_recovered(tmp_path, caplog):
    from compress.models.disk.outlock import lock_path, output_lock

    out = tmp_path / "out"
    lock = lock_path(out)
    host = socket.gethostname()
    lock.write_text(json.dumps({"pid": os.getppid(), "host": host, "started": "t0"}))
    refused = rf"PID {os.getppid()} on {host}, started t0"
    with pytest.raises(OutputLockedError, match=refused), output_lock(out):
        pass
    lock.write_text(json.dumps({"pid": dead_pid(), "host": host, "started": "t0"}))
    with output_lock(out):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with output_lock(out):  # re-entrant within one process
            pass
        assert lock.exists()
    assert "recovered the stale lock" in caplog.text and not lock.exists()


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    from compress.models.disk.outlock import lock_path, output_lock

    monkeypatch.setenv("RANK", "1")
    with output_lock(tmp_path / "out") as held:
        assert held is None and not lock_path(tmp_path / "out").exists()


def test_internal_error_names_the_command_that_shows_the_traceback(tmp_path, monkeypatch):
    import compress.api as stage  # what the CLI calls

    def bug(*a, **k):
        raise RuntimeError("unexpected pos")

    monkeypatch.setattr(stage, "train", bug)
    out = str(tmp_path / "o")
    r = CliRunner().invoke(app, [*TRAIN, "--out", out])
    assert r.exit_code == 1 and f"`compress -v {' '.join(TRAIN)} --out {out}`" in r.output
    r = CliRunner().invoke(app, [*TRAIN, "--out", out, "-v"])  # -v after the verb works too
    assert r.exit_code == 1 and "Traceback" in r.output
