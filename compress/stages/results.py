"""What each stage function returns: a typed summary (also what `--json` writes, via `to_dict`).
Nested parts (metrics, settings) stay JSON-shaped dicts, written to cards and reports as is."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from compress.models.jsontypes import JsonObject

if TYPE_CHECKING:
    from compress.pruning.flops import OpCount
    from compress.pruning.latency import Latency
    from compress.pruning.outcome import PruneResult
    from compress.quantization.context import QuantizeResult


@dataclass
class StageSummary:
    """Fields every stage summary has: where the artifact went."""

    out: str

    def to_dict(self) -> JsonObject:
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
class TeacherLineage:
    """What a distilled student's card says about its teacher: enough to find and trust it."""

    ref: str
    weights: str | None
    architecture: str
    params: int
    content_hash: str | None
    history: list[dict[str, Any]]
    metrics: dict[str, Any]  # val/test metrics, and whether from its card or measured now


@dataclass
class DistillSummary(StageSummary):
    teacher: TeacherLineage
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
class Measurement:
    """What a prune card compares before and after: counts, file size, latency, accuracy."""

    ops: OpCount
    file_bytes: int
    latency: Latency | None = None  # None: not measured
    metrics: dict[str, float] | None = None  # val_top1, test_top1 (None: untrained)

    @property
    def params(self) -> int:
        return self.ops.params

    @property
    def macs(self) -> int:
        return self.ops.macs

    def to_dict(self) -> JsonObject:
        out: dict[str, Any] = {**self.ops.to_dict(), "file_bytes": self.file_bytes}
        if self.latency is not None:
            out["latency"] = self.latency.to_dict()
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out


@dataclass
class PruneSummary(StageSummary):
    """The prune stage's result: the pruner's own result (not a copy) and what the stage
    measured before and after."""

    model: str
    weights: str | None
    untrained: bool
    criterion: str
    global_pruning: bool
    before: Measurement
    after: Measurement
    speedup: dict[str, float | None]  # before/after ratios: params, macs, file, ort, torch
    result: PruneResult

    def to_dict(self) -> JsonObject:
        """`compress prune --json`: the stage's fields, then the pruner's (flat, as ever)."""
        r = self.result.to_dict()
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "result"}
        own["before"], own["after"] = self.before.to_dict(), self.after.to_dict()
        return own | {k: r[k] for k in PRUNER_KEYS.split()}


# The pruner's result fields a prune summary shows (its before/after counts are the stage's).
PRUNER_KEYS = (
    "target steps layers latency_trace notes prune_seconds finetune_seconds finetune achieved"
)


@dataclass
class ExportSummary(StageSummary):
    params: int
    export: dict[str, Any]  # path, opset, exporter, bytes, seconds ...
    parity: dict[str, Any]
    parity_summary: str
    gates: dict[str, bool] = field(default_factory=dict)


@dataclass
class QuantizeSummary(StageSummary):
    """What the quantizer did and measured (its own result), whether the model was trained,
    and test-split metrics of both models."""

    trained: bool
    result: QuantizeResult
    test: dict[str, Any] | None = None  # test-split metrics of both (reporting only)

    def to_dict(self) -> JsonObject:
        fields = {k: v for k, v in self.result.to_dict().items() if k != "path"}
        return {"out": self.out, "trained": self.trained, **fields, "test": self.test}


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
