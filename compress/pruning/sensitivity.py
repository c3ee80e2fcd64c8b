"""Pruning sensitivity: what each prunable layer (group) costs in accuracy when pruned alone.

A copy pruned at one layer, at a few ratios, is measured (val top-1, MACs and params saved,
onnxruntime latency) into JSON, Markdown and a plot; `prune --from-sensitivity` turns it into
per-layer ratios (:func:`compress.pruning.config.ratios_from_sensitivity`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.export.bench.report import fmt_num, markdown_table
from compress.models.errors import UsageError
from compress.models.jsontypes import JsonObject
from compress.models.options import check_options, option
from compress.models.zoo.registry import spec_of
from compress.pruning.config import CRITERIA, SENSITIVITY_JSON
from compress.pruning.flops import Geometry
from compress.pruning.graph import Progress, build_pruner, make_importance, prunable_groups
from compress.pruning.latency import LatencyConfig, ort_latency_ms
from compress.pruning.prune import PruneConfig, prune_layer_stepwise

log = logging.getLogger(__name__)

Scorer = Callable[[nn.Module], float]  # model -> validation top-1 (fraction)
JSON_NAME, MD_NAME, PNG_NAME = SENSITIVITY_JSON, "sensitivity.md", "sensitivity.png"


@dataclass
class SensitivityConfig:
    """Ratios tried per layer, the criterion, layers left out, and whether to time each trial."""

    ratios: tuple[float, ...] | list[float] = option(
        (0.25, 0.5, 0.75), "Comma-separated ratios to try per layer.", cli="csv-float"
    )
    criterion: str = option("l2", "Channel ranking criterion (see prune).", choices=CRITERIA)
    round_to: int | None = option(8, "Channel multiple (1 = off).", min=1)
    ignore: list[str] = option(help="Layer to leave out (repeatable).", factory=list, cli="repeat")
    latency: bool = option(True, "Time every trial in onnxruntime.")
    latency_batch: int = option(1, "Batch size of the latency trials.", cli=False, min=1)
    latency_threads: int = option(2, "onnxruntime threads of the latency trials.", cli=False, min=1)
    val_limit: int = option(2000, "Validation images per trial (0 = the whole split).", min=0)

    def __post_init__(self) -> None:
        if not self.ratios or any(not 0 < r < 1 for r in self.ratios):
            raise UsageError(f"--ratios must be in (0, 1), got {self.ratios}")
        self.ratios = sorted(set(self.ratios))
        check_options(self, flags=True)
        self.round_to = None if self.round_to == 1 else self.round_to


@dataclass
class Trial:
    ratio: float
    top1: float | None
    drop: float | None  # baseline top-1 minus this (fraction)
    macs_saved: float  # fraction of the whole model's MACs removed
    params_saved: float
    latency_ms: float | None


@dataclass
class LayerSensitivity:
    name: str
    channels: int
    macs_share: float  # this layer's own MACs / the model's
    trials: list[Trial] = field(default_factory=list)


@dataclass
class SensitivityResult:
    model: str
    base_top1: float | None
    base_macs: int
    base_params: int
    base_latency_ms: float | None
    config: dict[str, Any]
    layers: list[LayerSensitivity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return asdict(self)


def analyze(
    model: nn.Module, cfg: SensitivityConfig, score: Scorer | None = None, *, model_name: str = ""
) -> SensitivityResult:
    """Prune each layer alone at each ratio and measure; `score` gives validation top-1."""
    x = torch.zeros((1, *spec_of(model).input_shape))
    geo = Geometry(model, x)
    macs0, params0 = geo.macs(model), geo.params(model)
    own = geo.per_module(model)
    lat_cfg = LatencyConfig(batch=cfg.latency_batch, threads=cfg.latency_threads, runs=10)
    lat0 = ort_latency_ms(model, lat_cfg)[0] if cfg.latency else None
    top0 = score(model) if score else None
    res = SensitivityResult(model_name, top0, macs0, params0, lat0, asdict(cfg))
    pcfg = PruneConfig(ratio=0.0, criterion=cfg.criterion, round_to=cfg.round_to, ignore=cfg.ignore)
    # every group root: a conv with its BatchNorm and consumers (residual sums: all their inputs)
    pruner, _ = build_pruner(model, pcfg, x, make_importance("l2"), Progress(), 0.0)
    for name, _, channels in prunable_groups(pruner):
        entry = LayerSensitivity(name, channels, round(own.get(name, 0) / max(1, macs0), 5))
        usable = [r for r in cfg.ratios if int(channels * (1 - r)) >= 1]
        if len(usable) < len(cfg.ratios):
            res.notes.append(f"{name}: {channels} channels, ratios above {usable[-1:]} skipped")
        for r, pruned, counts in prune_layer_stepwise(model, name, usable, pcfg, x):
            top1 = score(pruned) if score else None
            lat = ort_latency_ms(pruned, lat_cfg)[0] if cfg.latency else None
            entry.trials.append(
                Trial(
                    ratio=r,
                    top1=top1,
                    drop=None if top1 is None or top0 is None else round(top0 - top1, 5),
                    macs_saved=round(1 - counts.macs / max(1, macs0), 5),
                    params_saved=round(1 - counts.params / max(1, params0), 5),
                    latency_ms=None if lat is None else round(lat, 4),
                )
            )
        log.info("sensitivity %s: %s", name, [(t.ratio, t.top1) for t in entry.trials])
        res.layers.append(entry)
    return res


def write_report(res: SensitivityResult, directory: Path) -> None:
    """sensitivity.json, sensitivity.md and sensitivity.png into `directory`."""
    (directory / JSON_NAME).write_text(json.dumps(res.to_dict(), indent=2) + "\n")
    (directory / MD_NAME).write_text(markdown(res))
    plot(res, directory / PNG_NAME)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def markdown(res: SensitivityResult) -> str:
    ratios = res.config["ratios"]
    body = []
    for layer in res.layers:
        by_ratio = {t.ratio: t for t in layer.trials}
        cells = [_cell(by_ratio.get(r)) for r in ratios]
        body.append([layer.name, str(layer.channels), f"{100 * layer.macs_share:.1f}", *cells])
    head = ["layer", "channels", "MACs share %", *(f"ratio {r:g}" for r in ratios)]
    lines = [
        f"# Pruning sensitivity of {res.model or 'the model'}",
        "",
        f"Baseline: val top-1 {_pct(res.base_top1)} %, {res.base_macs:,} MACs, "
        f"{res.base_params:,} params, onnxruntime {fmt_num(res.base_latency_ms, '{:.3f} ms')} "
        f"(batch {res.config['latency_batch']}, {res.config['latency_threads']} threads).",
        "Each layer (with the layers coupled to it) is pruned alone; cells: val top-1 % / "
        "MACs saved % / latency ms.",
        "",
        markdown_table(head, body, right_from=1),
        "",
        *(f"- {n}" for n in res.notes),
    ]
    return "\n".join(lines) + "\n"


def _cell(t: Trial | None) -> str:
    if t is None:
        return "-"
    return f"{_pct(t.top1)} / {100 * t.macs_saved:.1f} / {fmt_num(t.latency_ms, '{:.3f}')}"


def plot(res: SensitivityResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for layer in res.layers:
        xs = [t.ratio for t in layer.trials]
        if res.base_top1 is None:  # untrained: plot what pruning the layer saves instead
            ys = [100 * t.macs_saved for t in layer.trials]
        else:
            xs = [0.0, *xs]
            ys = [100 * res.base_top1] + [100 * (t.top1 or 0.0) for t in layer.trials]
        ax.plot(xs, ys, marker="o", label=layer.name)
    ax.set_xlabel("channel ratio pruned (this layer only)")
    ax.set_ylabel("val top-1 %" if res.base_top1 is not None else "MACs saved %")
    ax.set_title(f"Pruning sensitivity: {res.model}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2 if len(res.layers) > 12 else 1, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
