"""Measuring deploy candidates: accuracy on the validation split, then latency in rounds.

Accuracy is measured on the runner itself (where the model will run), once per (runtime,
precision): thread count changes speed, not results. Latency uses the same timing loop as
`compress bench` (`compress.export.bench.timing.time_calls`), with the candidates taking turns slice by slice
(`rounds`), so load from other processes hits every candidate alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compress.export.bench.results import rnd
from compress.export.bench.timing import Timings, time_calls
from compress.export.runtimes.runner import Runner
from compress.models.data.datasets import synthetic_batch
from compress.models.errors import CompressError
from compress.models.zoo.registry import ModelSpec
from compress.stages.deploy_candidates import (
    Candidate,
    ModelFiles,
    batch_fn,
    effective_precision,
    needs_torch,
    open_runner,
    scope,
)
from compress.training.evaluate import evaluate

log = logging.getLogger(__name__)
# Measured here: after torch.set_num_threads(2) (OMP_NUM_THREADS=1) LeNet-5's first ~20 calls
# took 6-90 ms instead of 0.15 ms; so every candidate runs untimed for up to this long first.
SETTLE_S = 0.25
# What a runtime may raise for one candidate (a graph it can't compile, out of memory): the
# candidate is marked failed with the first line, and the others go on.
CANDIDATE_ERRORS = (CompressError, RuntimeError, MemoryError, ValueError)


@dataclass
class Trial:
    """One candidate's measurements and verdict (status: ok, chosen, below gate, failed)."""

    cand: Candidate
    status: str = "ok"
    reason: str = ""
    val_top1: float | None = None
    drop_pts: float | None = None
    effective_precision: str = ""
    providers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    create_seconds: float = 0.0
    ms: dict[int, list[float]] = field(default_factory=dict)
    runner: Runner | None = None

    def p50(self, bs: int) -> float:
        return Timings(tuple(self.ms[bs])).median_ms if self.ms.get(bs) else float("inf")

    def to_dict(self) -> dict[str, Any]:
        latency = {}
        for bs, ms in self.ms.items():
            t = Timings(tuple(ms))
            p50 = t.median_ms
            latency[str(bs)] = {
                "p50_ms": rnd(p50, 4),
                "p90_ms": rnd(t.percentile(90), 4),
                "mean_ms": rnd(t.mean_ms, 4),
                "runs": t.runs,
                "throughput": rnd(bs / p50 * 1e3 if p50 > 0 else 0.0),
            }
        return {
            "runtime": self.cand.runtime,
            "precision": self.cand.precision,
            "effective_precision": self.effective_precision or None,
            "threads": self.cand.threads,
            "status": self.status,
            "reason": self.reason or None,
            "providers": self.providers,
            "notes": self.notes,
            "val_top1": self.val_top1,
            "drop_pts": self.drop_pts,
            "session_seconds": rnd(self.create_seconds, 4),
            "latency": latency,
        }


def open_trials(cands: list[Candidate], files: ModelFiles, artifact: str = "fp32") -> list[Trial]:
    """Open every candidate's runner; one that fails to open is kept as `failed` with why.

    PyTorch runners are shared across thread counts (torch's thread pool is set per call by
    `scope`), so a torch-compile model compiles once per precision, not once per thread count.
    """
    trials = []
    shared: dict[tuple[str, str], Runner] = {}
    for c in cands:
        t = Trial(c)
        key = (c.runtime, c.precision)
        try:
            with scope(c):
                t.runner = shared.get(key) or open_runner(c, files, artifact)
            if needs_torch(c.runtime):
                shared[key] = t.runner
            t.providers = list(t.runner.providers)
            t.notes = [str(n) for n in getattr(t.runner, "notes", [])]
            t.create_seconds = float(t.runner.create_seconds)
            t.effective_precision = effective_precision(t.runner, c)
        except CANDIDATE_ERRORS as e:
            t.status, t.reason = "failed", _first_line(e)
            log.warning("deploy: %s can't be opened: %s", c.label, t.reason)
        trials.append(t)
    return trials


def measure_accuracy(trials: list[Trial], loader: Any, num_classes: int, limit: int | None) -> None:
    """Validation top-1 of each (runtime, precision), measured on its most-threaded runner."""
    done: dict[tuple[str, str], float | str] = {}
    for t in sorted(trials, key=lambda t: -t.cand.threads):
        if t.runner is None:
            continue
        key = (t.cand.runtime, t.cand.precision)
        if key not in done:
            done[key] = _evaluate(t, loader, num_classes, limit)
        got = done[key]
        if isinstance(got, str):
            t.status, t.reason, t.runner = "failed", got, None
        else:
            t.val_top1 = got


def _evaluate(t: Trial, loader: Any, num_classes: int, limit: int | None) -> float | str:
    import torch

    assert t.runner is not None
    run = batch_fn(t.runner)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(run(x.numpy()), dtype=np.float32))

    try:
        with scope(t.cand):
            return round(evaluate(predict, loader, num_classes, limit=limit).top1, 6)
    except CANDIDATE_ERRORS as e:
        log.warning("deploy: %s failed on the validation split: %s", t.cand.label, e)
        return f"failed on the validation split: {_first_line(e)}"


def apply_gate(trials: list[Trial], reference: float | None, max_drop: float) -> None:
    """Mark candidates whose validation top-1 lost more than `max_drop` points."""
    for t in trials:
        if t.status != "ok" or t.val_top1 is None or reference is None:
            continue
        t.drop_pts = round(100.0 * (reference - t.val_top1), 4)
        if t.drop_pts > max_drop + 1e-9:
            t.status = "below gate"
            t.reason = f"validation top-1 dropped {t.drop_pts:.2f} pt (> max_drop {max_drop:g})"


def time_trials(
    trials: list[Trial],
    spec: ModelSpec,
    batch_sizes: tuple[int, ...],
    *,
    seconds: float,
    rounds: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Time every `ok` trial at every batch size, in `rounds` interleaved slices; then take
    each runner's session seconds again (compiles during accuracy and timing count)."""
    inputs = {bs: synthetic_batch(spec, bs).numpy() for bs in batch_sizes}
    budget = seconds / rounds
    for t in trials:  # untimed: a new thread count can run slow for its first dozens of calls
        for bs in batch_sizes:
            if t.status == "ok" and t.runner is not None:
                _settle(t, inputs[bs], min(SETTLE_S, budget))
    for r in range(rounds):
        for t in trials:
            if t.status != "ok" or t.runner is None:
                continue
            for bs in batch_sizes:
                if progress:
                    progress(f"{t.cand.label} · batch {bs} · round {r + 1}/{rounds}")
                _time_slice(t, bs, inputs[bs], budget, warmup)
    for t in trials:  # torch-compile adds each shape's compile time to its runner's
        if t.runner is not None:
            t.create_seconds = float(t.runner.create_seconds)


def _settle(t: Trial, x: np.ndarray, seconds: float) -> None:
    assert t.runner is not None
    run = batch_fn(t.runner)
    try:
        with scope(t.cand):
            time_calls(lambda: run(x), warmup=0, min_runs=1, budget_s=seconds)
    except CANDIDATE_ERRORS as e:
        t.status, t.reason = "failed", f"warm-up: {_first_line(e)}"


def _time_slice(t: Trial, bs: int, x: np.ndarray, budget: float, warmup: int) -> None:
    assert t.runner is not None
    run = batch_fn(t.runner)
    try:
        with scope(t.cand):
            got = time_calls(lambda: run(x), warmup=warmup, min_runs=2, budget_s=budget)
    except CANDIDATE_ERRORS as e:
        t.status, t.reason = "failed", f"batch {bs}: {_first_line(e)}"
        return
    t.ms.setdefault(bs, []).extend(got.ms)


def _first_line(e: BaseException) -> str:
    text = str(e.args[0] if e.args else e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:300]


def speedups(best: Trial, baseline: list[Trial], bs: int) -> dict[str, Any]:
    """The chosen candidate's p50 speed-up at batch `bs` against the dense baseline's fastest
    candidate within its gate (any runtime, any precision), and against its onnxruntime fp32
    run (the fastest thread count), each labelled; None where that case was not measured."""
    ok = [t for t in baseline if t.status == "ok" and t.ms.get(bs)]
    ort = [t for t in ok if t.cand.runtime == "ort-cpu" and t.cand.precision == "fp32"]
    mine = best.p50(bs)

    def versus(pool: list[Trial], label: str) -> dict[str, Any] | None:
        if not pool or not mine > 0:
            return None
        ref = min(pool, key=lambda t: t.p50(bs))
        return {
            "speedup": rnd(ref.p50(bs) / mine, 3),
            "baseline": ref.cand.label,
            "baseline_p50_ms": rnd(ref.p50(bs), 4),
            "label": label,
        }

    return {
        "batch_size": bs,
        "p50_ms": rnd(mine, 4),
        "vs_fastest_dense": versus(ok, "vs the fastest dense baseline on this machine"),
        "vs_ort_fp32": versus(ort, "vs the dense baseline on onnxruntime fp32"),
    }
