"""Faults of the machine, part 2 (issue #30): a save killed with SIGKILL at a chosen point (the
COMPRESS_TEST_KILL_AT hook of compress.models.disk.durable: deterministic, no sleep race), two `compress train`
on one --out, and truncated or bit-flipped files of each kind we write."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.cli.app import app
from tests.conftest import MINI
from tests.test_faults import TRAIN, leftovers, one_error_line, top1

ROOT = Path(__file__).resolve().parents[1]


def compress(*argv: str, kill_at: str | None = None, wait: bool = True):
    """`python -m compress ARGV` in a child process (with the kill hook set when asked)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COMPRESS_TEST_KILL_AT", None)
    if kill_at:
        env["COMPRESS_TEST_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "compress", *argv]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_killed_mid_checkpoint_keeps_the_previous_one_and_resume_recovers(tmp_path):
    """SIGKILL after epoch 2's checkpoint is written but before it replaces epoch 1's: epoch 1's
    loads; --resume recovers the stale lock, removes the temporary and finishes."""
    from compress.models.artifacts.artifact import load_model
    from compress.training.checkpoint import load_checkpoint

    out = tmp_path / "out"
    argv = [*TRAIN[:3], "--epochs", "2", *TRAIN[5:], "--out", str(out)]
    r = compress(*argv, kill_at="file:written#2")
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    assert load_checkpoint(out.with_name("out.checkpoint") / "last.pt")["epoch"] == 0
    left = leftovers(tmp_path)
    assert (
        len(left) == 2 and left[0].startswith("out.checkpoint/.last.pt.") and left[1] == "out.lock"
    )
    r = CliRunner().invoke(app, [*argv, "--resume"])  # in-process: one start-up less
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "recovered the stale lock" in said and "resumed from" in said
    assert leftovers(tmp_path) == [] and not out.with_name("out.checkpoint").exists()
    load_model(out)


@pytest.mark.parametrize("point", ["dir:filled", "dir:swapped"])
def test_killed_while_replacing_an_artifact_leaves_a_whole_one(
    point, trained_lenet, tmp_path, bundle
):
    """`--overwrite` killed before the swap: the previous artifact, same accuracy; after it: the
    new one, complete. The next write to that --out removes what the dead run left."""
    from compress.models.artifacts.artifact import read_card
    from compress.models.disk.durable import remove_stale_temps
    from compress.models.disk.outlock import output_lock

    out = tmp_path / "art"
    shutil.copytree(trained_lenet, out)
    before, acc = read_card(out).content_hash, top1(out, bundle)
    r = compress(*TRAIN, "-m", str(out), "--out", str(out), "--overwrite", kill_at=point)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    card = read_card(out)  # sizes and weight hashes checked: whole, not half
    if point == "dir:filled":
        assert card.content_hash == before and top1(out, bundle) == acc
    else:
        assert card.content_hash != before and card.history[-1]["stage"] == "train"
    assert len(leftovers(tmp_path)) == 2  # the dead run's temporary directory and lock
    with output_lock(out):
        remove_stale_temps(out)
    assert leftovers(tmp_path) == []


def test_a_second_run_on_the_same_out_is_refused_at_once(tmp_path):
    """Two `compress train` on one --out: the second is refused before any work, naming the
    first's PID; the first is unaffected (it is stopped here only to end the test)."""
    out = tmp_path / "out"
    first = compress(*TRAIN[:3], "--epochs", "500", *TRAIN[5:], "--out", str(out), wait=False)
    try:
        lock = out.with_name("out.lock")
        for _ in range(600):  # wait for the first run's lock (a state, not a duration)
            if (lock.exists() and lock.stat().st_size) or first.poll() is not None:
                break
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[0]
        r = CliRunner().invoke(app, [*TRAIN, "--out", str(out)])
        one_error_line(r, 2, f"{out} is being written by another run (PID {first.pid} on")
        assert "refused before any work" in r.output and first.poll() is None
    finally:
        first.kill()
        first.wait()


def _flip(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def onnx_artifact(trained_lenet, tmp_path_factory) -> Path:
    from compress.export.onnx.convert import ExportConfig
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.stages.export import run_export

    out = tmp_path_factory.mktemp("onnx") / "ox"
    data = DataConfig(dataset="fashion-mnist", data_dir=MINI, batch_size=64)
    run_export(ModelRef(str(trained_lenet)), out, ExportConfig(parity_samples=4), data)
    return out


@pytest.mark.parametrize(
    ("file", "damage", "says"),
    [
        ("card.json", _truncate, "card.json is not a valid card"),
        ("model.safetensors", _truncate, "model.safetensors is missing or its size differs"),
        ("model.safetensors", _flip, "model.safetensors does not match the SHA-256"),
        ("model.onnx", _truncate, "model.onnx is missing or its size differs"),
        ("model.onnx", _flip, "model.onnx does not match the SHA-256"),
    ],
    ids=["card-truncated", "st-truncated", "st-flipped", "onnx-truncated", "onnx-flipped"],
)
def test_a_damaged_artifact_is_named_with_what_to_do(
    file, damage, says, trained_lenet, onnx_artifact, tmp_path
):
    src = onnx_artifact if file == "model.onnx" else trained_lenet
    art = tmp_path / "a"
    shutil.copytree(src, art)
    damage(art / file)
    r = CliRunner().invoke(app, ["eval", "-m", str(art), "--limit", "64", "--data-dir", MINI])
    one_error_line(r, 3, says)
    assert "rerun the stage that made it" in r.output


@pytest.mark.parametrize(("damage", "says"), [(_truncate, "truncated or corrupted"), (_flip, "")])
def test_a_damaged_checkpoint_is_named_with_the_two_ways_on(damage, says, tmp_path):
    """A half-written or bit-flipped last.pt: one line naming it, not torch's miniz message."""
    import torch

    from compress.models.zoo.registry import create_model
    from compress.training.checkpoint import save_checkpoint

    ck = tmp_path / "out.checkpoint" / "last.pt"
    model = create_model("lenet5")
    save_checkpoint(
        ck, {"epoch": 0, "epochs": 1, "model": model.state_dict(), "rng": torch.ones(8)}
    )
    damage(ck)
    r = CliRunner().invoke(app, [*TRAIN, "--out", str(tmp_path / "out"), "--resume"])
    one_error_line(r, 3, f"checkpoint {ck} is damaged ({says}")
    assert f"delete {ck} to start the run over, or run without --resume" in " ".join(
        r.output.split()
    )
    assert "miniz" not in r.output and leftovers(tmp_path) == []
