"""What `compress doctor` reports: findings, the diagnosis holding them, the op vocabulary
(one small data model for the checks, the probe and the renderers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from compress.models.jsontypes import JsonObject

QUANT_OPS = {
    *("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QGemm"),
    *("QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul"),
    *("QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "DynamicQuantizeMatMul"),
    "MatMulIntegerToFloat",
}
FLOAT_COMPUTE = {"Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "ConvTranspose"}
INT_COMPUTE = {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger"}
INT_COMPUTE |= {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


@dataclass
class Finding:
    """One observation: what, how bad, the evidence, and a concrete next step."""

    code: str
    severity: str  # ok, info, warning or problem
    title: str
    detail: str = ""
    suggestion: str = ""


@dataclass(frozen=True)
class RuntimeTiming:
    """One runtime x precision timed at batch 1: what it ran in, its median latency."""

    runtime: str
    precision: str
    effective_precision: str
    p50_ms: float


@dataclass
class Diagnosis:
    """All findings for one model on one runtime, plus the raw facts they came from."""

    model: str
    runtime: str
    threads: int
    cpu: str
    isa: dict[str, bool]
    quantized: bool
    op_counts: dict[str, int]
    session: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    ranking: list[RuntimeTiming] = field(default_factory=list)  # fastest first

    def to_dict(self) -> JsonObject:
        return asdict(self)

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]
