"""Truncated SVD of Linear layers: W (m x n) ~ B (m x r) A (r x n), chosen by rank or budget.

Each chosen nn.Linear becomes a LowRankLinear from the top-r singular triplets (sqrt(S) on each
half, the same scale for fine-tuning). A rank must be below the break-even mn/(m+n) and at most
min(m, n): others are refused before anything changes. KD fine-tuning: compress.stages.factorize.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from compress.models.errors import UnsupportedError, UsageError
from compress.models.options import check_options, option
from compress.models.zoo.lowrank import LowRankLinear, break_even
from compress.models.zoo.registry import spec_of

log = logging.getLogger(__name__)


@dataclass
class FactorizeConfig:
    """Which Linear layers to factorize and to what rank; KD fine-tuning settings."""

    rank: int | None = option(None, "One rank for every chosen Linear layer.", min=1)
    ranks: dict[str, int] = option(
        help="Rank of one layer, NAME=RANK (repeatable), e.g. fc1=16.",
        factory=dict,
        flag="--layer-rank",
        cli="pairs",
        shape="NAME=RANK (e.g. fc1=16)",
    )
    param_target: float | None = option(
        None, "Keep this fraction (0-1) of each chosen layer's weights.", above=0, below=1
    )
    layers: tuple[str, ...] = option(
        (),
        "Linear module to factorize (repeatable); default: all but the classifier.",
        cli="repeat",
    )
    epochs: int = option(2, "KD fine-tuning epochs from the parent (0: none).", min=0)
    lr: float = option(1e-3, "Peak learning rate of the fine-tuning.", above=0)
    temperature: float = option(2.0, "KD temperature.")
    alpha: float = option(0.5, "Weight of the teacher term in [0, 1].")
    seed: int = option(0, "Seed of the fine-tuning (the verb's --seed).", cli=False)

    def __post_init__(self) -> None:
        given = [self.rank is not None, bool(self.ranks), self.param_target is not None]
        if sum(given) != 1:
            raise UsageError(
                "factorize takes exactly one of --rank, --layer-rank or --param-target"
            )
        check_options(self, flags=True)
        self.layers = tuple(self.layers)


@dataclass
class LayerRank:
    layer: str
    out_features: int
    in_features: int
    rank: int
    break_even: float
    params_before: int
    params_after: int
    energy_kept: float  # fraction of sum(S^2) the kept singular values carry


def chosen_layers(model: nn.Module, cfg: FactorizeConfig) -> dict[str, nn.Linear]:
    """The Linear layers to factorize: named ones (checked), else all but the classifier."""
    modules = dict(model.named_modules())
    names = list(cfg.ranks) or list(cfg.layers)
    if not names:
        head = spec_of(model).classifier
        return {n: m for n, m in modules.items() if isinstance(m, nn.Linear) and n != head}
    out = {}
    for name in names:
        m = modules.get(name)
        if m is None:
            linear = [n for n, x in modules.items() if isinstance(x, nn.Linear)]
            raise UsageError(f"no layer named {name!r}", hint=f"Linear layers: {', '.join(linear)}")
        if not isinstance(m, nn.Linear):
            raise UnsupportedError(
                f"{name} is a {type(m).__name__}: factorize takes Linear layers only"
            )
        out[name] = m
    return out


def rank_for(name: str, m: nn.Linear, cfg: FactorizeConfig) -> int:
    """The rank of one layer; a rank that can't pay or can't exist is a usage error."""
    rows, cols = m.out_features, m.in_features
    be = break_even(rows, cols)
    if cfg.param_target is not None:
        r = max(1, math.floor(cfg.param_target * be))
    else:
        r = cfg.ranks.get(name, cfg.rank or 0)
    shape = f"{name} ({cols} -> {rows})"
    if r > min(rows, cols):
        raise UsageError(
            f"rank {r} for {shape} is larger than the layer: at most min(m, n) = {min(rows, cols)}"
        )
    if r >= be:
        raise UsageError(
            f"rank {r} for {shape} saves nothing: the break-even rank is mn/(m+n) = {be:.1f}",
            hint=f"use a rank <= {math.ceil(be) - 1}, or leave the layer out (--layers)",
        )
    return r


def factorize(model: nn.Module, cfg: FactorizeConfig) -> list[LayerRank]:
    """Replace the chosen Linear layers of `model` in place; returns one record per layer."""
    layers = chosen_layers(model, cfg)
    if not layers:
        raise UnsupportedError(
            "the model has no Linear layer to factorize (besides its classifier)"
        )
    ranks = {name: rank_for(name, m, cfg) for name, m in layers.items()}  # all checked first
    records = []
    for name, m in layers.items():
        low, energy = low_rank(m, ranks[name])
        model.set_submodule(name, low)
        be = break_even(m.out_features, m.in_features)
        records.append(
            LayerRank(
                layer=name,
                out_features=m.out_features,
                in_features=m.in_features,
                rank=ranks[name],
                break_even=round(be, 2),
                params_before=m.weight.numel(),
                params_after=low.first.weight.numel() + low.second.weight.numel(),
                energy_kept=round(energy, 4),
            )
        )
        msg = "%s: rank %d (break-even %.1f), %.1f%% of the spectrum's energy kept"
        log.info(msg, name, ranks[name], be, 100 * energy)
    return records


def low_rank(m: nn.Linear, r: int) -> tuple[LowRankLinear, float]:
    """The rank-r LowRankLinear closest to `m` (Eckart-Young) and the energy fraction it keeps."""
    w = m.weight.detach().double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:r].sqrt()
    low = LowRankLinear(m.in_features, m.out_features, r, bias=m.bias is not None)
    with torch.no_grad():
        low.first.weight.copy_((root[:, None] * vh[:r]).to(m.weight.dtype))
        low.second.weight.copy_((u[:, :r] * root[None, :]).to(m.weight.dtype))
        if m.bias is not None:
            low.second.bias.copy_(m.bias.detach())
    low.to(m.weight.device)
    return low, float((s[:r] ** 2).sum() / (s**2).sum().clamp_min(1e-30))
