"""The one timing loop (warm-up, timed calls, median and percentiles) for bench, pruning's latency
target, the sensitivity scan and the quantizer. Callables timed interleaved (one call each per
round) share outside load, so their ratio stays meaningful."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np

from compress.models.errors import UsageError

MAX_RUNS = 100_000  # a safety cap when only a time budget bounds the loop
STATS = ("p50", "p90", "p99", "mean", "std", "min", "max")


@dataclass(frozen=True)
class Timings:
    """Milliseconds per call of one timed callable, in call order."""

    ms: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.ms)

    @property
    def median_ms(self) -> float:
        return self.percentile(50)

    def percentile(self, q: float) -> float:
        """Linear-interpolated percentile (numpy's default), so p50 is the usual median."""
        return float(np.percentile(self.ms, q))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.ms))

    @property
    def min_ms(self) -> float:
        return float(min(self.ms))

    @property
    def max_ms(self) -> float:
        return float(max(self.ms))

    def stats(self, batch_size: int, nd: int = 3) -> dict[str, float]:
        """`{p50,p90,p99,mean,std,min,max}_ms` (`nd` decimals) and items per second at p50."""
        p50, a = self.median_ms, np.asarray(self.ms)
        ms = [p50, self.percentile(90), self.percentile(99), a.mean(), a.std(), a.min(), a.max()]
        out = {f"{k}_ms": round(float(v), nd) for k, v in zip(STATS, ms, strict=True)}
        return out | {"throughput": round(batch_size / p50 * 1e3 if p50 > 0 else 0.0, 3)}


def time_calls(fn: Callable[[], object], **kw: Any) -> Timings:
    """Time `fn()` alone (`time_interleaved`'s keywords)."""
    return time_interleaved([fn], **kw)[0]


def time_interleaved(
    fns: Sequence[Callable[[], object]],
    *,
    warmup: int = 3,
    max_runs: int | None = None,
    min_runs: int = 5,
    budget_s: float | None = None,
) -> list[Timings]:
    """Time several callables taking turns (each round calls every one once): `warmup` untimed
    calls each, then timed rounds until `max_runs`, or until `budget_s` seconds have passed once
    `min_runs` rounds were timed."""
    if not fns:
        raise UsageError("nothing to time: give at least one callable")
    if warmup < 0 or min_runs < 1 or (max_runs is not None and max_runs < 1):
        raise UsageError("timing needs warm-up >= 0, runs >= 1")
    if max_runs is None and budget_s is None:
        raise UsageError("timing needs a number of runs or a time budget")
    if budget_s is not None and budget_s < 0:
        raise UsageError(f"timing budget must be >= 0 s, got {budget_s}")
    cap = max_runs if max_runs is not None else MAX_RUNS
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    start = perf_counter()
    while True:
        for fn, t in zip(fns, times, strict=True):
            t0 = perf_counter()
            fn()
            t.append((perf_counter() - t0) * 1e3)
        n = len(times[0])
        if n >= cap:
            break
        if budget_s is not None and n >= min_runs and perf_counter() - start >= budget_s:
            break
    return [Timings(tuple(t)) for t in times]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on `n` intra-op threads inside the block, restoring the old count after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
