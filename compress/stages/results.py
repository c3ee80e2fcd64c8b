"""What each stage function returns: a typed summary (also what `--json` writes, via `to_dict`).

The nested parts (metrics, before/after measurements, settings) stay JSON-shaped dicts: they
are written to cards and reports as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StageSummary:
    """Fields every stage summary has: where the artifact went."""

    out: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainSummary(StageSummary):
    params: int
    metrics: dict[str, Any]  # {"val": {...}, "test": {...}} top-1, top-5, loss, samples
    seconds: float
    precision: str  # what training ran in (fp32, bf16, fp16)
    amp_reason: str
    epochs: list[dict[str, float]] = field(default_factory=list)


@dataclass
class DistillSummary(StageSummary):
    teacher: dict[str, Any]  # its lineage: ref, content hash, metrics
    student: str
    params: int
    teacher_params: int
    before: dict[str, Any]  # the student's metrics before distillation
    metrics: dict[str, Any]  # ... and after
    kd: dict[str, Any]
    feature_pairs: list[Any]
    teacher_cached: bool
    seconds: float
    precision: str
    amp_reason: str
    overflow_steps: int
    epochs: list[dict[str, float]] = field(default_factory=list)


@dataclass
class PruneSummary(StageSummary):
    model: str
    weights: str | None
    untrained: bool
    target: Any
    criterion: str
    global_pruning: bool
    before: dict[str, Any]  # params, macs, file bytes, latency, metrics
    after: dict[str, Any]
    speedup: dict[str, float | None]  # before/after ratios: params, macs, file, ort, torch
    steps: list[dict[str, Any]] = field(default_factory=list)
    layers: Any = None
    latency_trace: Any = None
    notes: list[str] = field(default_factory=list)
    prune_seconds: float = 0.0
    finetune_seconds: float = 0.0
    finetune: dict[str, Any] = field(default_factory=dict)  # the policy that ran: said, epochs
    achieved: dict[str, Any] = field(default_factory=dict)  # requested vs achieved reduction


@dataclass
class ExportSummary(StageSummary):
    params: int
    export: dict[str, Any]  # path, opset, exporter, bytes, seconds ...
    parity: dict[str, Any]
    parity_summary: str
    gates: dict[str, bool] = field(default_factory=dict)


@dataclass
class QuantizeSummary(StageSummary):
    trained: bool
    method: str
    precision: str
    settings: dict[str, Any]
    reason: str
    isa: dict[str, Any]
    fp32: dict[str, Any]  # size, val top-1, latency of the float model
    quantized: dict[str, Any]  # ... and of the quantized one
    drop_pts: float | None
    budget_met: bool
    size_ratio: float
    test: dict[str, Any] | None = None  # test-split metrics of both (reporting only)
    fallback_nodes: list[str] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    fallback_attempts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)  # per layer: bits, computes in


@dataclass
class FactorizeSummary(StageSummary):
    ranks: dict[str, int]
    layers: list[dict[str, Any]]  # per layer: shapes, rank, break-even, weights, energy kept
    params_before: int
    params: int
    parent: dict[str, Any]  # metrics of the parent
    after_svd: dict[str, Any]  # metrics right after the SVD
    metrics: dict[str, Any]  # metrics after KD fine-tuning
    kd: dict[str, Any] | None
    epochs: int
