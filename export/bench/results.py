"""Benchmark results: one row per (model, runtime, batch) case, the report, speed-ups. `Measured`
pools a case's slices (`BenchConfig.rounds`); `case_result` makes the row every format shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from compress.export.bench.timing import Timings
from compress.models.jsontypes import JsonObject
from compress.models.notes import Note, texts

if TYPE_CHECKING:
    from compress.export.bench.cases import Case

SCHEMA = "compress-bench/1"
INPUT_NOTE = "synthetic: random normal inputs of the model's shape (latency only, not accuracy)"


@dataclass
class CaseResult:
    """One (model, runtime, batch size) measurement. Latencies in milliseconds."""

    model: str
    runtime: str
    batch_size: int
    providers: list[str]
    fallback: bool
    threads: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # items per second at p50
    peak_rss_mb: float | None
    run_rss_mb: float | None
    cuda_mem_mb: float | None
    size_bytes: int | None
    session_seconds: float
    precision: str
    accuracy: float | None
    input: str = "synthetic"
    speedup_vs_first: float | None = None
    speedup_vs_torch: float | None = None
    effective_precision: str | None = None  # what the runtime really computed in (OpenVINO)


@dataclass
class BenchReport:
    """Everything a benchmark produced; `to_dict()` is the JSON schema `compress-bench/1`."""

    environment: dict[str, Any]
    config: dict[str, Any]
    models: list[dict[str, Any]]
    results: list[CaseResult]
    notes: list[Note] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # model, runtime, precision, reason

    def to_dict(self) -> JsonObject:
        """The report as bench.json holds it."""
        return {
            "schema": SCHEMA,
            "input": INPUT_NOTE,
            "environment": self.environment,
            "config": self.config,
            "models": self.models,
            "results": [asdict(r) for r in self.results],
            "notes": texts(self.notes),
            "skipped": self.skipped,
        }


@dataclass
class Measured:
    """The timings of one case so far (several slices when rounds > 1) and what ran it."""

    runtime: str
    providers: list[str]
    fallback: bool
    session_seconds: float
    size_bytes: int | None
    ms: list[float]
    peak_mb: float | None
    delta_mb: float | None
    cuda_mb: float | None
    effective_precision: str | None = None

    def add(self, other: Measured) -> Measured:
        """Pool another slice's timings into this one; memory: the larger of the two."""
        self.ms += other.ms
        for name in ("peak_mb", "delta_mb", "cuda_mb"):
            known = [v for v in (getattr(self, name), getattr(other, name)) if v is not None]
            setattr(self, name, max(known, default=None))
        return self


def case_result(case: Case, bs: int, m: Measured) -> CaseResult:
    """The result row of one case at batch size `bs` from all its timed slices."""
    t = Timings(tuple(m.ms))
    stats: dict[str, Any] = t.stats(bs)  # the p50_ms ... max_ms and throughput fields
    return CaseResult(
        model=case.model.label,
        runtime=m.runtime,
        batch_size=bs,
        providers=m.providers,
        fallback=m.fallback,
        threads=case.threads,
        iters=t.runs,
        **stats,
        peak_rss_mb=m.peak_mb,
        run_rss_mb=m.delta_mb,
        cuda_mem_mb=m.cuda_mb,
        size_bytes=m.size_bytes,
        session_seconds=m.session_seconds,
        precision=case.precision,
        accuracy=case.model.accuracy,
        effective_precision=m.effective_precision,
    )


def add_speedups(results: list[CaseResult], order: list[str]) -> None:
    """p50 ratios: vs the first model (same runtime and batch; same precision when it ran at
    it, else its first) and vs torch fp32 (same model)."""
    p50 = {(r.model, r.runtime, r.precision, r.batch_size): r.p50_ms for r in results}
    anyp: dict[tuple[str, str, int], float] = {}
    for r in results:
        anyp.setdefault((r.model, r.runtime, r.batch_size), r.p50_ms)
    first = order[0]
    for r in results:
        if not r.p50_ms > 0:
            continue
        base = p50.get((first, r.runtime, r.precision, r.batch_size)) or anyp.get(
            (first, r.runtime, r.batch_size)
        )
        r.speedup_vs_first = rnd(base / r.p50_ms, 3) if base else None
        torch_p50 = p50.get((r.model, "torch", "fp32", r.batch_size))
        r.speedup_vs_torch = rnd(torch_p50 / r.p50_ms, 3) if torch_p50 else None


def rnd(x: Any, nd: int = 3) -> float:
    return round(float(x), nd)
