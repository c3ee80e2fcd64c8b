"""Asked against removed (per layer for ratio targets, in total for MACs / parameters).

Whole channel counts and `round_to` alignment (which keeps more, never fewer: :func:`aligned_keep`)
leave a gap, said here when beyond `PruneConfig.tolerance`. An explicit `ratio_tolerance` is a
limit: refused before pruning (:func:`refuse_unmeetable`) or, if the result misses it, after.
"""

from __future__ import annotations

import logging

from compress.models.errors import UsageError
from compress.pruning.config import PruneConfig
from compress.pruning.outcome import Achieved, Counts, LayerRemoved, LayersAchieved, TotalAchieved

log = logging.getLogger(__name__)


def aligned_keep(keep: int, channels: int, round_to: int, tolerance: float) -> int:
    """Channels to keep: `keep` rounded *up* to a multiple of `round_to` when that keeps fewer
    than all `channels` and adds at most `tolerance * channels`; else exactly `keep`."""
    if round_to <= 1 or keep % round_to == 0:
        return keep
    up = -(-keep // round_to) * round_to
    if up >= channels or up - keep > tolerance * channels + 1e-9:
        return keep
    return up


def refuse_unmeetable(cfg: PruneConfig, layers: list[tuple[str, int, float]]) -> None:
    """With an explicit tolerance, refuse a per-layer ratio no whole channel count meets.
    `layers`: (name, channels, ratio asked)."""
    if cfg.ratio_tolerance is None or cfg.global_pruning:
        return
    for name, channels, ratio in layers:
        best = (channels - int(channels * (1 - ratio))) / channels  # torch-pruning, unaligned
        if abs(best - ratio) > cfg.ratio_tolerance + 1e-9:
            raise UsageError(
                f"--ratio-tolerance {cfg.ratio_tolerance:g} cannot be met on {name!r}: with "
                f"{channels} channels the nearest to {ratio:g} is {best:.3f}",
                hint="raise --ratio-tolerance, change the ratio, or --ignore " + name,
            )


def layer_report(
    cfg: PruneConfig, layers: list[tuple[str, int, float]], after: dict[str, int]
) -> LayersAchieved:
    """Per-layer requested vs achieved removed fractions; `after`: channels now by layer name."""
    rows, off = [], []
    for name, channels, ratio in layers:
        got = 1 - after.get(name, channels) / channels if channels else 0.0
        rows.append(LayerRemoved(name, channels, ratio, round(got, 4)))
        if abs(got - ratio) > cfg.tolerance + 1e-9:
            off.append(f"{name} ({got:.3f} of {channels} vs {ratio:g})")
    return LayersAchieved("layers", cfg.tolerance, rows, off)


def total_report(cfg: PruneConfig, kind: str, before: Counts, after: Counts) -> TotalAchieved:
    """MACs / parameter targets: the fraction asked to be removed vs the fraction removed."""
    start, now = float(before.of(kind)), float(after.of(kind))
    asked = 1 - cfg.count_goal(start) / start
    got = 1 - now / start
    off = [f"{kind} ({got:.3f} removed vs {asked:.3f})"] if abs(got - asked) > cfg.tolerance else []
    asked_factor = round(1 / (1 - asked), 3) if asked < 1 else None
    factor = round(start / now, 3) if now else None
    return TotalAchieved(
        kind, cfg.tolerance, round(asked, 4), round(got, 4), asked_factor, factor, off
    )


def judge(cfg: PruneConfig, report: Achieved) -> str | None:
    """A note when something is beyond the tolerance (an error when the tolerance was given)."""
    if not report.beyond:
        return None
    flags = "--round-to, --max-layer-ratio" if report.kind == "layers" else "the target"
    text = (
        f"removed more or less than asked, beyond the tolerance {cfg.tolerance:g}: "
        f"{', '.join(report.beyond)} (involved: {flags}; the channel counts are whole numbers)"
    )
    if cfg.ratio_tolerance is not None:
        raise UsageError(text, hint="raise --ratio-tolerance or change the request")
    log.warning("%s", text)
    return text
