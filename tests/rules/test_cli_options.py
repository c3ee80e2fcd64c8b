"""The config classes are the one source of the CLI's options: every field has help, every flag
of a verb is a config field (but for the CLI-only flags listed here), and a verb shows the
field's help. The CLI reads the fields from source (no torch for `--help`): that reading must
match the imported classes."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import typer.main
from typer.testing import CliRunner

from compress.cli import options as o
from compress.cli.app import app
from compress.cli.fields import config_fields
from compress.models.options import long_flag

CONFIGS = (o.PRUNE, o.QUANTIZE, o.DISTILL, o.TRAIN, o.DATA, o.BENCH, o.TUNE, o.EXPORT, o.DEPLOY)
CONFIGS += (o.FACTORIZE, o.SENSITIVITY, o.EVAL, o.PREDICT, o.DOCTOR, o.RUN)
CONFIGS += (o.SHAPE, o.MODEL, o.RUN_MODEL)
# Flags that are no config field: what to run on and where the result goes (model reference,
# recipe, images, output, report files) and verbs that only show (models, info).
MODEL = {"model"}
OUTPUT = {"out", "overwrite", "json_out", "csv_out", "md_out", "plot", "help"}
CLI_ONLY = {
    "distill": {"teacher", "student", "teacher_weights", "student_weights"},
    "tune": {"recipe"},
    "run": {"recipe"},
    "predict": {"images"},
}
PLAIN = {"models", "info"}


def _class(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


@pytest.mark.parametrize("target", CONFIGS)
def test_the_source_reading_matches_the_class(target):
    real = dataclasses.fields(_class(target))
    read = config_fields(target)
    assert [f.name for f in read] == [f.name for f in real]
    for r, f in zip(real, read, strict=True):
        default = r.default_factory() if r.default is dataclasses.MISSING else r.default  # type: ignore[misc]
        assert (f.name, f.default) == (r.name, default)
        assert f.meta == dict(r.metadata), f.name


@pytest.mark.parametrize("target", CONFIGS)
def test_every_config_field_has_help(target):
    missing = [f.name for f in config_fields(target) if not f.meta.get("help")]
    assert not missing, f"{target}: fields without metadata help: {missing}"


def _commands() -> dict[str, object]:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined,no-any-return]


def _fields_by_name() -> dict[str, list]:
    out: dict[str, list] = {}
    for target in CONFIGS:
        for f in config_fields(target):
            out.setdefault(f.name, []).append(f)
    return out


@pytest.mark.parametrize("verb", sorted(set(_commands()) - PLAIN))
def test_every_flag_is_a_config_field_with_its_help(verb):
    by_name = _fields_by_name()
    for p in _commands()[verb].params:  # type: ignore[attr-defined]
        if p.name in MODEL | OUTPUT | CLI_ONLY.get(verb, set()):
            continue
        assert p.name in by_name, f"{verb} --{p.name}: no config field behind it"
        helps = {f.meta["help"] for f in by_name[p.name]}
        assert p.help in helps, f"{verb} {p.opts}: help differs from the field's metadata"
        assert any(long_flag(f.name, f.meta) in p.opts for f in by_name[p.name]), (verb, p.opts)


def test_a_field_default_is_the_flag_default():
    """The flag shows the config's default (as the CLI spells it), or the verb's own."""
    params = {p.name: p for p in _commands()["bench"].params}  # type: ignore[attr-defined]
    assert params["batch_sizes"].default == "1,8,32"
    assert params["runtimes"].default == ["torch", "ort-cpu"]
    distill = {p.name: p for p in _commands()["distill"].params}  # type: ignore[attr-defined]
    train = {p.name: p for p in _commands()["train"].params}  # type: ignore[attr-defined]
    assert (distill["epochs"].default, train["epochs"].default) == (5, 15)


def test_a_config_error_names_the_flag_not_the_field(tmp_path):
    """TrainConfig says `optimizer must be ...`; the CLI shows `--optimizer must be ...`, one
    line, exit code 2, before any work."""
    r = CliRunner().invoke(
        app, ["train", "-m", "lenet5", "-o", str(tmp_path / "x"), "--optimizer", "lion"]
    )
    assert r.exit_code == 2, r.output
    assert "error: --optimizer must be one of" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "x").exists()


def test_comma_lists_and_pairs_are_parsed_in_one_place():
    with pytest.raises(o.UsageError, match="--layer-bits takes NODE=BITS"):
        o.pairs(["fc1"], "--layer-bits", "NODE=BITS")
    assert o.pairs(["/fc1/Gemm=4", "a=8"], "--layer-bits") == {"/fc1/Gemm": 4, "a": 8}
    bench = o.ConfigOptions(o.BENCH, only=("batch_sizes",))
    assert bench.build({"batch_sizes": "1, 8"}).batch_sizes == (1, 8)
    with pytest.raises(o.UsageError, match="--batch-sizes must be comma-separated integers"):
        bench.build({"batch_sizes": "1,x"})
    scan = o.ConfigOptions(o.SENSITIVITY, only=("ratios",))
    assert scan.build({"ratios": "0.5, 0.25,0.5"}).ratios == [0.25, 0.5]
    with pytest.raises(o.UsageError, match="--ratios must be comma-separated numbers"):
        scan.build({"ratios": "0.5,half"})
    with pytest.raises(o.UsageError, match="--batch-sizes is empty"):
        bench.build({"batch_sizes": ","})


def test_prune_lr_help_names_the_default_lr():
    """The --lr help is a literal (read from source); it must say FINETUNE_LR."""
    from compress.pruning.config import FINETUNE_LR

    (lr,) = [f for f in config_fields(o.PRUNE) if f.name == "finetune_lr"]
    assert f"else {FINETUNE_LR:g})." in lr.meta["help"]
