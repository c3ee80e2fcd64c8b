"""`compress --help` and `compress VERB --help` stay fast: listing verbs and parsing options
import no torch, onnx or onnxruntime (checked with `-X importtime` in a fresh interpreter)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from compress.cli import options as o

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "onnx", "onnxruntime", "torch_pruning", "optuna", "matplotlib"}
# Light but not needed to show help: imported when a command runs (a download, a progress bar).
LATER = {
    "compress.models.weights.download",
    "urllib.request",
    "compress.cli.progress",
    "rich.progress",
}


def imported_modules(*args: str) -> tuple[set[str], str]:
    """Top-level packages a fresh `python -m compress ARGS` imports, and its stdout."""
    names, out = imported_dotted(*args)
    return {n.split(".")[0] for n in names}, out


def imported_dotted(*args: str) -> tuple[set[str], str]:
    """Modules (dotted names) a fresh `python -m compress ARGS` imports, and its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "compress", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return names, r.stdout


def verbs() -> list[str]:
    from compress.cli.app import app

    return sorted(c.name for c in app.registered_commands if c.name)


def test_root_help_imports_nothing_heavy():
    names, out = imported_modules("--help")
    assert "typer" in names  # the parse really ran
    assert not names & HEAVY, sorted(names & HEAVY)
    for verb in ("train", "prune", "quantize", "run"):
        assert verb in out


@pytest.mark.parametrize("verb", verbs())
def test_verb_help_imports_nothing_heavy(verb):
    dotted, out = imported_dotted(verb, "--help")
    names = {n.split(".")[0] for n in dotted}
    assert "--help" in out
    assert not names & HEAVY, sorted(names & HEAVY)
    assert not dotted & LATER, sorted(dotted & LATER)  # the root callback installs them lazily


def test_a_command_still_gets_the_download_bar(tmp_path):
    """The root callback installs the bar without importing it; a download then gets it."""
    from typer.testing import CliRunner

    from compress.cli.app import app
    from compress.cli.progress import DownloadBar
    from compress.models.progress import ProgressBar, progress_bar, set_progress_factory

    set_progress_factory(None)
    try:
        assert isinstance(progress_bar("downloading w", 10), ProgressBar)
        CliRunner().invoke(app, ["info", str(tmp_path)])  # any command: the callback runs
        bar = progress_bar("downloading w", 10)
        assert isinstance(bar, DownloadBar)
        bar.update(5)
        bar.close()
    finally:
        set_progress_factory(None)


def test_every_verb_is_registered():
    assert verbs() == sorted(
        [
            "train",
            "eval",
            "models",
            "info",
            "prune",
            "sensitivity",
            "export",
            "bench",
            "doctor",
            "quantize",
            "distill",
            "run",
            "tune",
            "deploy",
            "predict",
            "factorize",
        ]
    )


def test_a_verb_module_that_fails_to_import_is_an_error():
    """No verb silently disappears: the import error reaches the user."""
    code = (
        "import sys; sys.modules['compress.cli.run_cmd'] = None\n"
        "try:\n    import compress.cli.app\nexcept ImportError as e:\n"
        "    print('raised', e.name)\nelse:\n    print('swallowed')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.stdout.strip() == "raised compress.cli.run_cmd", r.stdout + r.stderr


def test_option_groups_are_declared_once_and_reach_the_command():
    """A verb takes `ModelOptions` and a config's options (`options_from`) as one parameter
    each; Typer sees their fields as options and the command gets the group and the config."""
    import typer
    from typer.testing import CliRunner

    seen = {}

    def cmd(
        model: o.ModelOpt,
        mo: o.ModelOptions = o.options_from(o.MODEL),
        data: object = o.options_from(o.DATA, only=(*o.WHERE, "limit")),
        dev: object = o.options_from(o.TRAIN, only=("device", "amp")),
    ) -> None:
        seen.update(ref=mo.of(model), data=data, dev=dev)

    app = typer.Typer()
    app.command()(o.with_groups(cmd))
    args = ["-m", "lenet5", "--weights", "w.safetensors", "--input-size", "32", "--amp", "off"]
    r = CliRunner().invoke(app, [*args, "--dataset", "mnist", "--limit", "5"])
    assert r.exit_code == 0, r.output
    ref = seen["ref"]
    assert (ref.model, ref.weights, ref.input_size, ref.num_classes) == (
        "lenet5",
        "w.safetensors",
        32,
        None,
    )
    assert (seen["data"].dataset, seen["data"].limit) == ("mnist", 5)
    assert (seen["dev"].device, seen["dev"].amp) == ("auto", "off")
    assert type(seen["dev"]).__name__ == "TrainConfig"


@pytest.mark.parametrize(
    ("verb", "groups"),
    [
        ("train", "model data train"),
        ("eval", "model data eval"),
        ("prune", "model data train prune"),
        ("sensitivity", "model data"),
        ("quantize", "model data quantize"),
        ("export", "run-model data export"),
        ("bench", "run-model bench"),
        ("doctor", "model doctor"),
        ("distill", "shape data train distill"),
        ("tune", "tune"),
        ("deploy", "data deploy"),
        ("run", "run"),
        ("predict", "predict"),
    ],
)
def test_verbs_use_the_shared_groups(verb, groups):
    from dataclasses import fields

    from compress.cli.app import app

    cls = {"model": o.ModelOptions, "shape": o.ShapeOptions, "run-model": o.RunModelOptions}
    configs = {"data": o.DATA, "train": o.TRAIN, "prune": o.PRUNE, "quantize": o.QUANTIZE}
    configs |= {"export": o.EXPORT, "bench": o.BENCH, "distill": o.DISTILL, "tune": o.TUNE}
    configs |= {"deploy": o.DEPLOY, "eval": o.EVAL, "doctor": o.DOCTOR, "run": o.RUN}
    configs |= {"predict": o.PREDICT}
    cmd = next(c for c in app.registered_commands if c.name == verb)
    sig = inspect.signature(cmd.callback.__wrapped__)
    shown = inspect.signature(cmd.callback).parameters
    used = {p.annotation.split(".")[-1] for p in sig.parameters.values()}
    targets = {p.default.target: p.default for p in sig.parameters.values()
               if isinstance(p.default, o.ConfigOptions)}  # fmt: skip
    for g in groups.split():
        if g in configs:
            assert configs[g] in targets, g
            for f in targets[configs[g]].fields():
                assert f.name in shown, (g, f.name)
            continue
        assert cls[g].__name__ in used, g
        for f in fields(cls[g]):
            assert f.name in shown


def test_a_group_takes_its_defaults_from_the_parameter_default():
    """`options_from(TRAIN, epochs=5)` makes 5 the default of --epochs for that verb only; the
    other fields keep the config's defaults."""
    import typer
    from typer.testing import CliRunner

    seen = {}

    def short(fit: object = o.options_from(o.TRAIN, epochs=5)) -> None:
        seen["short"] = fit

    def plain(fit: object = o.options_from(o.TRAIN)) -> None:
        seen["plain"] = fit

    for cmd in (short, plain):
        app = typer.Typer()
        app.command()(o.with_groups(cmd))
        r = CliRunner().invoke(app, [])
        assert r.exit_code == 0, r.output
    assert (seen["short"].epochs, seen["plain"].epochs) == (5, 15)
    assert seen["short"].lr == seen["plain"].lr == 4e-3


def test_train_and_distill_build_the_same_training_config(monkeypatch):
    """The same training flags give `compress train` and `compress distill` the same
    TrainConfig (one shared group); each verb keeps its own --epochs default."""
    from typer.testing import CliRunner

    import compress.api
    from compress.cli.app import app

    seen = {}

    class Stop(Exception):
        pass

    def train(model, out, cfg, *a, **k):
        seen["train"] = cfg
        raise Stop

    def distill(teacher, student, out, kd, data, *, train, **k):
        seen["distill"], seen["kd"] = train, kd
        raise Stop

    monkeypatch.setattr(compress.api, "train", train)
    monkeypatch.setattr(compress.api, "distill", distill)
    flags = ["--lr", "0.01", "--weight-decay", "0", "--optimizer", "sgd", "--schedule", "cosine"]
    flags += ["--channels-last", "--seed", "3", "--device", "cpu", "--amp", "off", "-o", "x"]
    runner = CliRunner()
    r = runner.invoke(app, ["train", "-m", "lenet5", *flags])
    assert "train" in seen, r.output
    r = runner.invoke(app, ["distill", "-t", "a", "-s", "lenet5", "--temperature", "3", *flags])
    assert "distill" in seen, r.output
    assert (seen["train"].epochs, seen["distill"].epochs) == (15, 5)
    assert replace(seen["distill"], epochs=15) == seen["train"]
    assert (seen["train"].lr, seen["train"].schedule, seen["train"].seed) == (0.01, "cosine", 3)
    assert (seen["kd"].epochs, seen["kd"].lr, seen["kd"].temperature) == (5, 0.01, 3.0)


def test_cli_functions_are_short():
    """Commands only parse options, call the library and print: each function <= 60 lines."""
    import ast

    long = []
    for path in sorted((ROOT / "compress" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno is not None:
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(f"{path.name}:{node.name} {n} lines")
    assert not long, long


def test_shared_weights_fill_zoo_names_only(tmp_path):
    """`bench -m lenet5 -m ART --weights W`: W fills the zoo model, the artifact keeps its own."""
    from compress.models.artifacts.resolve import zoo_weights

    (tmp_path / "art").mkdir()
    assert zoo_weights("lenet5", "w.safetensors") == "w.safetensors"
    assert zoo_weights(str(tmp_path / "art"), "w.safetensors") is None
    assert zoo_weights("lenet5", None) is None
