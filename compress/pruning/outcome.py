"""What pruning did: PruneResult and its typed pieces (counts, asked vs achieved, sparse learning),
one small data model that session, achieved and sparse share without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

from compress.models.jsontypes import JsonObject


@dataclass(frozen=True)
class Counts:
    """Parameters and MACs per image of the convolutions and linear layers."""

    params: int
    macs: int

    def of(self, kind: str) -> int:
        """The count named by a target kind ("params" or "macs")."""
        return int(getattr(self, kind))


@dataclass(frozen=True)
class LayerRemoved:
    """One layer of a ratio target: channels before, the fraction asked and removed."""

    layer: str
    channels: int
    asked: float
    removed: float


@dataclass(frozen=True)
class LayersAchieved:
    """Ratio targets: per layer, asked vs removed; `beyond` the layers off by > tolerance."""

    kind: str
    tolerance: float
    layers: list[LayerRemoved]
    beyond: list[str]


@dataclass(frozen=True)
class TotalAchieved:
    """MACs / parameter targets: the fraction asked to be removed vs the fraction removed."""

    kind: str
    tolerance: float
    asked: float
    removed: float
    asked_factor: float | None
    factor: float | None
    beyond: list[str]


Achieved: TypeAlias = LayersAchieved | TotalAchieved


@dataclass(frozen=True)
class SparseLearning:
    """What sparse learning did; `group_norm_spread` is the ratio of the largest to the median
    channel-group norm, which grows as the regulariser separates the groups."""

    epochs: int
    method: str
    reg: float
    seconds: float
    train_loss: float
    group_norm_spread: float
    metrics: dict[str, float] | None = None


@dataclass
class PruneResult:
    """What pruning did; params/MACs count convolutions and linear layers per image."""

    target: dict[str, Any]
    before: Counts
    after: Counts
    steps: list[dict[str, Any]] = field(default_factory=list)
    layers: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    latency_trace: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sparse: SparseLearning | None = None
    prune_seconds: float = 0.0
    finetune_seconds: float = 0.0
    finetune: dict[str, Any] = field(default_factory=dict)  # the policy that ran (said, epochs)
    achieved: Achieved | None = None  # requested vs achieved reduction

    def to_dict(self) -> JsonObject:
        """For the card: nested results as plain JSON, the same keys as they were ever written."""
        d = asdict(self)
        d["achieved"] = d["achieved"] or {}
        if self.sparse is not None and self.sparse.metrics is None:
            del d["sparse"]["metrics"]
        return d
