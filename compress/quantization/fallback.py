"""Accuracy-aware fallback: find the nodes that hurt most when lowered, keep them in float.

Sensitivity: the logit SQNR (dB, lower is worse) on a probe batch with *only* that node lowered.
The search keeps the k most sensitive nodes in float for growing k until the accuracy is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compress.quantization import ortrun

log = logging.getLogger(__name__)

Build = Callable[[list[str]], Path]  # node names -> path of the model built from them
Score = Callable[[Path], float]  # model path -> validation top-1 (fraction)


@dataclass
class NodeScore:
    node: str
    op: str
    sqnr_db: float


@dataclass
class Attempt:
    excluded: int
    top1: float
    drop_pts: float


@dataclass
class FallbackResult:
    """The model kept, which nodes stayed float, and whether the budget was met."""

    path: Path
    excluded: list[str]
    top1: float
    drop_pts: float
    met: bool
    attempts: list[Attempt] = field(default_factory=list)


def rank_nodes(
    build_only: Build, nodes: dict[str, str], probe: np.ndarray, ref_logits: np.ndarray
) -> list[NodeScore]:
    """Score each node by the logit SQNR of the model with only that node lowered; worst first."""
    scores = []
    for name, op in nodes.items():
        path = build_only([name])
        out = ortrun.run(ortrun.session(path), probe)
        scores.append(NodeScore(name, op, round(ortrun.sqnr_db(ref_logits, out), 2)))
        log.debug("sensitivity %s (%s): %.2f dB", name, op, scores[-1].sqnr_db)
    return sorted(scores, key=lambda s: s.sqnr_db)


def steps(limit: int) -> list[int]:
    """How many nodes to keep in float at each try: 1, 2, 3, 4, 6, 8, 12, 16, ... up to limit."""
    out, k = [], 1
    while k < limit:
        out.append(k)
        k = k + 1 if k < 4 else k + k // 2
    return [*out, limit] if limit > 0 else []


def fallback_search(
    build_excluding: Build,
    ranked: list[str],
    score: Score,
    fp32_top1: float,
    max_drop: float,
    limit: int,
    gate: bool = False,
) -> FallbackResult:
    """Keep the top-k sensitive nodes in float for growing k until the drop is <= max_drop, else
    the best try. `gate`: `score` is pass/fail (1.0/0.0), logs itself, and the last try (the most
    float) is kept when none passes."""
    attempts: list[Attempt] = []
    best: FallbackResult | None = None
    for k in steps(min(limit, len(ranked))):
        excluded = ranked[:k]
        path = build_excluding(excluded)
        top1 = score(path)
        drop = round((fp32_top1 - top1) * 100, 3)
        attempts.append(Attempt(k, top1, drop))
        if not gate:
            msg = "fallback: %d node(s) kept in float -> top-1 %.2f %% (drop %.2f pt)"
            log.info(msg, k, 100 * top1, drop)
        result = FallbackResult(path, excluded, top1, drop, drop <= max_drop, attempts)
        if result.met:
            return result
        if best is None or gate or top1 > best.top1:
            best = result
    if best is None:
        raise ValueError("fallback_search needs a positive limit and at least one node")
    return best  # its attempts: the list every try appended to
