"""`compress deploy`'s candidates (a bench case at one thread count): opened, gated on validation
top-1 once per (runtime, precision) (threads change speed, not results), then timed taking turns
in the bench's loop (`run_rounds`) so outside load hits them alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compress.export.bench.baseline import FASTEST_DENSE, ORT_FP32, find_baselines
from compress.export.bench.cases import (
    CASE_ERRORS,
    Case,
    Skipped,
    first_line,
    open_runner,
)
from compress.export.bench.measure import BenchConfig, run_rounds
from compress.export.bench.results import Measured, rnd
from compress.export.bench.timing import Timings, torch_threads
from compress.export.environment import physical_cores
from compress.export.runtimes.input_size import trained_input_size
from compress.export.runtimes.runner import TORCH_RUNTIMES, Runner
from compress.models.artifacts.artifact import Card
from compress.models.errors import UsageError
from compress.models.jsontypes import JsonObject
from compress.training.evaluate import evaluate

log = logging.getLogger(__name__)
# Measured here: after torch.set_num_threads(2) (OMP_NUM_THREADS=1) LeNet-5's first ~20 calls
# took 6-90 ms instead of 0.15 ms; so every candidate runs untimed for up to this long first.
SETTLE_S = 0.25


@dataclass
class Trial:
    """One candidate's measurements and verdict (status: ok, chosen, below gate, failed)."""

    case: Case
    status: str = "ok"
    reason: str = ""
    val_top1: float | None = None
    drop_pts: float | None = None
    effective_precision: str = ""
    providers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    create_seconds: float = 0.0
    timed: dict[int, Measured] = field(default_factory=dict)  # by batch size
    runner: Runner | None = None

    def p50(self, bs: int) -> float:
        got = self.timed.get(bs)
        return Timings(tuple(got.ms)).median_ms if got and got.ms else float("inf")

    def to_dict(self) -> JsonObject:
        """The candidate's row of deploy.json."""
        return {
            "runtime": self.case.runtime,
            "precision": self.case.precision,
            "effective_precision": self.effective_precision or None,
            "threads": self.case.threads,
            "status": self.status,
            "reason": self.reason or None,
            "providers": self.providers,
            "notes": self.notes,
            "val_top1": self.val_top1,
            "drop_pts": self.drop_pts,
            "session_seconds": rnd(self.create_seconds, 4),
            "latency": {str(bs): _latency(bs, m) for bs, m in self.timed.items()},
        }


def _latency(bs: int, m: Measured) -> JsonObject:
    """One batch size's timings as deploy.json shows them (ms, 4 decimals)."""
    s = Timings(tuple(m.ms)).stats(bs, 4)
    keep = ("p50_ms", "p90_ms", "mean_ms")
    return {k: s[k] for k in keep} | {"runs": len(m.ms), "throughput": s["throughput"]}


@dataclass(frozen=True)
class Versus:
    """The chosen candidate's p50 speed-up against one baseline case."""

    speedup: float
    baseline: str  # the baseline candidate, `ort-cpu/fp32/1t`
    baseline_p50_ms: float
    label: str


@dataclass(frozen=True)
class Speedup:
    """The choice's p50 at the deciding batch size; speed-ups only vs a measured baseline."""

    batch_size: int
    p50_ms: float
    vs_fastest_dense: Versus | None = None
    vs_ort_fp32: Versus | None = None


def thread_counts(threads: tuple[int, ...] | None) -> tuple[int, ...]:
    """The thread counts to try: as given, else 1 and all physical cores (deduplicated)."""
    counts = threads or (1, physical_cores())
    if any(t < 1 for t in counts):
        raise UsageError(f"--threads must be >= 1, got {list(counts)}")
    return tuple(dict.fromkeys(counts))


def open_trials(cases: list[Case]) -> list[Trial]:
    """Open every candidate's runner (one that fails is kept as `failed`, with why). PyTorch
    runners are shared across thread counts: torch-compile compiles once per precision."""
    trials = []
    shared: dict[tuple[int, str, str], Runner] = {}
    for c in cases:
        t, key = Trial(c), (id(c.model), c.runtime, c.precision)
        try:
            with torch_threads(c.threads):
                t.runner = shared.get(key) or open_runner(c)
            if c.runtime in TORCH_RUNTIMES:
                shared[key] = t.runner
            t.providers = list(t.runner.providers)
            t.notes = [str(n) for n in getattr(t.runner, "notes", [])]
            t.create_seconds = float(t.runner.create_seconds)
            t.effective_precision = str(getattr(t.runner, "effective_precision", "") or c.precision)
        except CASE_ERRORS as e:
            t.status, t.reason = "failed", first_line(e)
            log.warning("deploy: %s can't be opened: %s", c.label, t.reason)
        trials.append(t)
    return trials


def measure_accuracy(trials: list[Trial], loader: Any, num_classes: int, limit: int | None) -> None:
    """Validation top-1 of each (runtime, precision), measured on its most-threaded runner."""
    done: dict[tuple[str, str], float | str] = {}
    for t in sorted(trials, key=lambda t: -t.case.threads):
        if t.runner is None:
            continue
        key = (t.case.runtime, t.case.precision)
        if key not in done:
            done[key] = _evaluate(t, loader, num_classes, limit)
        got = done[key]
        if isinstance(got, str):
            t.status, t.reason, t.runner = "failed", got, None
        else:
            t.val_top1 = got


def _evaluate(t: Trial, loader: Any, num_classes: int, limit: int | None) -> float | str:
    assert t.runner is not None
    try:
        with torch_threads(t.case.threads):
            return round(evaluate(t.runner.predict, loader, num_classes, limit=limit).top1, 6)
    except CASE_ERRORS as e:
        log.warning("deploy: %s failed on the validation split: %s", t.case.label, e)
        return f"failed on the validation split: {first_line(e)}"


def reference_of(card: Card, trials: list[Trial]) -> tuple[float | None, str]:
    """The accuracy the gate compares with: the card's validation top-1, else fp32 here. At a
    size other than the training one, fp32 here on the resized images: resizing changes the
    task, so the gate then checks runtimes and precisions, not the model's accuracy."""
    spec = card.model_spec
    trained, size = trained_input_size(spec), spec.input_size
    val = card.metrics.get("val")
    if card.trained and isinstance(val, dict) and "top1" in val and trained == size:
        return float(val["top1"]), "(validation top-1 recorded in the card)"
    at = "" if trained == size else f" at {size}x{size}, images resized from {trained}x{trained}"
    for t in trials:
        if t.case.precision == "fp32" and t.val_top1 is not None:
            return t.val_top1, f"(validation top-1 measured on {t.case.runtime} fp32{at})"
    return None, "(no reference accuracy: gate not applied)"


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
    batch_sizes: tuple[int, ...],
    *,
    seconds: float,
    rounds: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Time every `ok` trial at every batch size in the bench's loop (`rounds` interleaved
    slices, >= 2 runs each, after up to SETTLE_S untimed); compiles count as session seconds."""
    ok = [t for t in trials if t.status == "ok" and t.runner is not None]
    cfg = BenchConfig(
        batch_sizes=batch_sizes, seconds=seconds, rounds=rounds, warmup=warmup, min_iters=2 * rounds
    )  # min_iters: 2 per slice
    runners = {i: t.runner for i, t in enumerate(ok) if t.runner is not None}
    show = (lambda d, n, what: progress(what)) if progress else None
    timed = run_rounds([t.case for t in ok], cfg, [], show, runners=runners, settle_s=SETTLE_S)
    for i, t in enumerate(ok):
        t.timed = {bs: m for (j, bs), m in timed.measured.items() if j == i}
        if i in timed.failed:
            t.status, t.reason = "failed", timed.failed[i]
        if t.runner is not None:  # torch-compile adds each shape's compile time to its runner's
            t.create_seconds = float(t.runner.create_seconds)


def speedups(best: Trial, baseline: list[Trial], bs: int) -> Speedup:
    """The choice's p50 speed-up at batch `bs` vs the dense baseline's fastest candidate within
    its gate and vs its fastest onnxruntime fp32 one, found as the bench finds them."""
    cases = [
        {"model": t.case.label, "runtime": t.case.runtime, "precision": t.case.precision,
         "batch_size": bs, "p50_ms": t.p50(bs), "fallback": t.timed[bs].fallback}
        for t in baseline
        if t.status == "ok" and bs in t.timed
    ]  # fmt: skip
    found = find_baselines(cases, {str(c["model"]) for c in cases}).get(bs, {})
    mine = best.p50(bs)

    def versus(role: str, label: str) -> Versus | None:
        b = found.get(role)
        if b is None or not mine > 0:
            return None
        return Versus(rnd(b.p50_ms / mine, 3), b.model, rnd(b.p50_ms, 4), label)

    return Speedup(
        bs,
        rnd(mine, 4),
        versus(FASTEST_DENSE, "vs the fastest dense baseline on this machine"),
        versus(ORT_FP32, "vs the dense baseline on onnxruntime fp32"),
    )


def candidate_rows(skipped: list[Skipped], trials: list[Trial]) -> list[JsonObject]:
    """deploy.json's candidates: the refused ones with their reason, then every one tried."""
    refused = [
        {"runtime": s.runtime, "precision": s.precision, "status": "skipped", "reason": s.reason}
        for s in skipped
    ]
    return refused + [t.to_dict() for t in trials]


def device_of(runtime: str) -> str:
    """The device a runtime name implies: cuda (torch-cuda, ort-cuda, ort-trt), gpu, npu, cpu."""
    if runtime.endswith(("-cuda", "-trt")):
        return "cuda"
    return next((d for d in ("gpu", "npu") if runtime.endswith("-" + d)), "cpu")


def format_table(trials: list[Trial], skipped: list[Skipped] | None = None) -> str:
    """Candidates as plain text (for the exit-5 message and logs)."""
    lines = [f"{'runtime':<12} {'prec':<5} {'thr':>3} {'val top-1':>9} {'drop':>7}  status"]
    for s in skipped or []:
        lines.append(
            f"{s.runtime:<12} {s.precision:<5} {'-':>3} {'-':>9} {'-':>7}  skipped: {s.reason}"
        )
    for t in trials:
        first = next(iter(t.timed), None)
        p50 = f"  p50 {t.p50(first):.3f} ms" if first is not None else ""
        drop = "-" if t.drop_pts is None else f"{t.drop_pts:.2f}"
        reason = f": {t.reason}" if t.reason else ""
        lines.append(
            f"{t.case.runtime:<12} {t.case.precision:<5} {t.case.threads:>3} "
            f"{pct(t.val_top1):>9} {drop:>7}  {t.status}{reason}{p50}"
        )
    return "\n".join(lines)


def pct(x: float | None) -> str:
    """A top-1 fraction as the deploy table shows it."""
    return "-" if x is None else f"{100 * x:.2f}%"
