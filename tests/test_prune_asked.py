"""What you ask is what you get: channel rounding never removes more than asked, the summary
says requested vs achieved, an explicit tolerance is a limit, and bad fine-tuning budgets are
refused in one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from compress.cli.app import app
from compress.models.artifacts.artifact import load_model
from compress.models.errors import UsageError
from compress.pruning.achieved import aligned_keep
from compress.pruning.config import PruneConfig
from compress.pruning.prune import prune
from compress.stages.common import ModelRef
from compress.stages.prune import run_prune

WIDTHS = str(Path(__file__).parent / "data" / "widths_model.py") + ":build"
runner = CliRunner()


@pytest.mark.parametrize(
    ("keep", "channels", "aligned"),
    [
        (46, 48, 46),  # rounding up would keep all 48: exact count instead
        (24, 32, 24),  # already a multiple
        (36, 48, 36),  # 40 would be 4 channels (8 pt) more than asked: beyond 5 pt, exact
        (1001, 2048, 1008),  # 7 more of 2048: aligned
        (12, 16, 12),  # a narrow layer keeps its exact count, never 8
    ],
)
def test_rounding_keeps_more_never_fewer_and_only_within_tolerance(keep, channels, aligned):
    got = aligned_keep(keep, channels, 8, 0.05)
    assert got == aligned and got >= keep


def _layer_widths(model: torch.nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("ratio", [0.05, 0.25])
def test_ratio_asked_is_ratio_removed_per_layer(tmp_path, ratio):
    """16/32/48-channel layers at --ratio R lose R +- 0.05 each (rounding used to halve the
    16-channel one and turn 0.05 into 1.98x fewer MACs)."""
    out = tmp_path / "p"
    s = run_prune(
        ModelRef(WIDTHS, weights="random", trust_code=True),
        out,
        PruneConfig(ratio=ratio),
        None,
        latency=False,
    )
    model, _ = load_model(out, trust_code=True)
    for before, after in zip([16, 32, 48], _layer_widths(model), strict=True):
        assert abs((1 - after / before) - ratio) <= 0.05 + 1e-9, (before, after)
    achieved = s.to_dict()["achieved"]
    rows = achieved["layers"]
    assert len(rows) == 3 and not achieved["beyond"]
    assert all(abs(r["removed"] - ratio) <= 0.05 + 1e-9 for r in rows)
    assert s.speedup["macs"] < 1 / (1 - ratio) ** 2 + 0.3  # no hidden extra cut


def test_macs_target_reports_asked_and_achieved(trained_lenet, tmp_path):
    js = tmp_path / "s.json"
    r = runner.invoke(
        app,
        ["prune", "--model", str(trained_lenet), "--target-macs", "2x", "--finetune-epochs", "0",
         "--no-latency", "--out", str(tmp_path / "p"), "--json", str(js)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    a = json.loads(js.read_text())["achieved"]
    assert a["asked_factor"] == 2.0 and a["factor"] >= 2.0
    assert abs(a["removed"] - a["asked"]) <= a["tolerance"]
    assert "asked: macs 2.0x fewer" in " ".join(r.output.split())


def test_explicit_tolerance_the_channels_cannot_meet_is_refused_before_pruning(trained_lenet):
    """LeNet-5's convolutions have 6 and 16 channels: 0.05 of them is never met within 0.01."""
    model, _ = load_model(trained_lenet)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UsageError, match=r"--ratio-tolerance 0.01 cannot be met on 'conv[12]'"):
        prune(model, PruneConfig(ratio=0.05, ratio_tolerance=0.01, round_to=None))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--finetune-epochs", "-1"], "--finetune-epochs must be >= 0"),
        (["--sparse-epochs", "2", "--final-finetune-epochs", "2"], "does not fit the budget"),
        (["--ratio-tolerance", "0.01"], "--ratio-tolerance 0.01 cannot be met on 'conv"),
        (["--ratio-tolerance", "1.5"], "--ratio-tolerance must be in [0, 1)"),
    ],
    ids=["negative-epochs", "budget-cannot-split", "tolerance-unmeetable", "tolerance-range"],
)
def test_bad_budgets_and_tolerances_are_one_line_and_write_nothing(
    trained_lenet, tmp_path, args, says
):
    out = tmp_path / "p"
    base = ["prune", "--model", str(trained_lenet), "--ratio", "0.05", "--round-to", "1"]
    r = runner.invoke(app, [*base, *args, "--no-latency", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert says in " ".join(r.output.split())
    assert "Traceback" not in r.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_out_defaults_to_a_fresh_runs_folder(trained_lenet, tmp_path, monkeypatch):
    """The card's `compress prune --model M` needs no --out: runs/<model>-pruned, then -2."""
    monkeypatch.chdir(tmp_path)
    args = ["prune", "--model", str(trained_lenet), "--ratio", "0.25", "--finetune-epochs", "0"]
    for expected in ("lenet5-pruned", "lenet5-pruned-2"):
        r = runner.invoke(app, [*args, "--no-latency"])
        assert r.exit_code == 0, r.output
        assert f"writing runs/{expected}" in r.output
        assert (tmp_path / "runs" / expected / "card.json").is_file()


def test_card_example_without_out_reaches_the_weights_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["prune", "--model", "resnet50"])
    assert r.exit_code == 2, r.output
    assert "Missing option" not in r.output and "has no trained weights" in r.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_batchnorm_recalibration_is_the_exact_average_over_the_images():
    from compress.training.batchnorm import recalibrate_batchnorm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    batches = [(torch.randn(8, 1, 6, 6) + i, None) for i in range(3)]
    done = recalibrate_batchnorm(model, batches, images=20)  # 8 + 8 + 4 of the last batch
    assert done.images == 20 and done.layers == 1
    with torch.no_grad():
        means = [model[0](x[: 20 - 8 * i]).mean(dim=(0, 2, 3)) for i, (x, _) in enumerate(batches)]
    assert torch.allclose(model[1].running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert not model.training and model[1].momentum == 0.1  # restored


def test_pruning_with_data_re_estimates_batchnorm_after_the_cut(mini_data):
    """Adaptive BN runs after every cut (recorded per step) and is what moves the statistics;
    --bn-recalibration 0 leaves them as they were."""
    from compress.models.data.datasets import load_data
    from compress.models.zoo.registry import create_model

    stats = {}
    for images in (0, 128):
        torch.manual_seed(0)
        m = create_model(WIDTHS, trust_code=True)
        data = load_data(mini_data, m.spec)
        res = prune(m, PruneConfig(ratio=0.25, bn_recalibration=images), data=data)
        stats[images] = m[1].running_var.clone()
        step = res.steps[0]
        assert ("bn_recalibration" in step) is bool(images)
        if images:
            assert step["bn_recalibration"].images == 128
    assert stats[0].shape == stats[128].shape
    assert not torch.allclose(stats[0], stats[128])
