"""Speed-ups against the fastest dense case measured here and ORT fp32, both labelled: "8x faster"
means little when the dense model gets half of it for free elsewhere. A case below the accuracy
gate is never a baseline. Takes any case with `model`, `runtime`, `precision`, `batch_size`,
`p50_ms` (a `CaseResult` or its JSON dict)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from compress.models.jsontypes import JsonObject

FLOAT_PRECISIONS = frozenset({"fp32", "bf16", "fp16"})
REFERENCE = ("ort-cpu", "fp32")  # the portable reference: onnxruntime CPU, fp32
FASTEST_DENSE = "fastest dense"
ORT_FP32 = "ort-cpu fp32"
ROLES = (FASTEST_DENSE, ORT_FP32)
ROLE_HELP = {
    FASTEST_DENSE: "the fastest dense (unpruned, unquantized) case measured here: any runtime, "
    "any float precision not measured below the accuracy gate",
    ORT_FP32: "the dense model on onnxruntime CPU at fp32",
}
COMPRESSING_STAGES = frozenset({"prune", "quantize"})


@dataclass(frozen=True)
class Baseline:
    """One reference case for one batch size."""

    role: str  # FASTEST_DENSE or ORT_FP32
    model: str
    runtime: str
    precision: str  # what it computed in (the effective precision when the runtime says)
    batch_size: int
    p50_ms: float

    @property
    def where(self) -> str:
        """`dense on openvino bf16`: which case it is, in words."""
        return f"{self.model} on {self.runtime} {self.precision}"

    def to_dict(self) -> JsonObject:
        """The baseline as bench.json and report.json hold it."""
        return asdict(self) | {"where": self.where}


def field_of(case: Any, name: str, default: Any = None) -> Any:
    """An attribute of a case object, or a key of a case dict."""
    if isinstance(case, dict):
        return case.get(name, default)
    return getattr(case, name, default)


def is_dense(card: Any) -> bool | None:
    """True for an unpruned, unquantized float model; None when there is no card to tell."""
    if card is None:
        return None
    history = getattr(card, "history", None) or []
    compressed = any(h.get("stage") in COMPRESSING_STAGES for h in history if isinstance(h, dict))
    return str(getattr(card, "precision", "fp32")) == "fp32" and not compressed


def dense_labels(models: list[dict[str, Any]]) -> set[str]:
    """Labels of the dense models of a bench (`models` of its JSON); when none says so and the
    first model (the reference of `compress bench`) has no card to tell, it stands in."""
    dense = {m["label"] for m in models if m.get("dense")}
    if dense or not models or models[0].get("dense") is False:
        return dense
    return {models[0]["label"]}


def ran_precision(case: Any) -> str:
    """The precision a case computed in: the runtime's own word when it gave one."""
    eff = field_of(case, "effective_precision")
    asked = str(field_of(case, "precision", "fp32"))
    return str(eff) if asked in FLOAT_PRECISIONS and eff and eff != "unknown" else asked


def find_baselines(
    cases: Iterable[Any],
    dense: Collection[str],
    passes: Callable[[Any], bool] | None = None,
) -> dict[int, dict[str, Baseline]]:
    """Per batch size, the fastest dense case and the onnxruntime fp32 dense case (when measured):
    float precision, no provider fallback, and `passes(case)` (default: `gate_passed` not False)."""
    ok = passes or (lambda c: field_of(c, "gate_passed") is not False)
    out: dict[int, dict[str, Baseline]] = {}
    for c in cases:
        p50 = field_of(c, "p50_ms")
        if field_of(c, "model") not in dense or not p50 or p50 <= 0:
            continue
        if field_of(c, "precision", "fp32") not in FLOAT_PRECISIONS or field_of(c, "fallback"):
            continue
        if not ok(c):
            continue
        found = out.setdefault(int(field_of(c, "batch_size")), {})
        is_ref = (field_of(c, "runtime"), field_of(c, "precision", "fp32")) == REFERENCE
        for role in (FASTEST_DENSE, ORT_FP32) if is_ref else (FASTEST_DENSE,):
            if role not in found or p50 < found[role].p50_ms:
                found[role] = _baseline(c, role)
    return out


def _baseline(case: Any, role: str) -> Baseline:
    return Baseline(
        role=role,
        model=str(field_of(case, "model")),
        runtime=str(field_of(case, "runtime")),
        precision=ran_precision(case),
        batch_size=int(field_of(case, "batch_size")),
        p50_ms=float(field_of(case, "p50_ms")),
    )


def speedups(case: Any, baselines: dict[int, dict[str, Baseline]]) -> dict[str, float | None]:
    """{role: baseline p50 / this p50} at the case's batch size (None where not measured)."""
    found = baselines.get(int(field_of(case, "batch_size")), {})
    p50 = field_of(case, "p50_ms")
    return {
        role: (round(found[role].p50_ms / p50, 3) if role in found and p50 and p50 > 0 else None)
        for role in ROLES
    }


def baseline_lines(baselines: dict[int, dict[str, Baseline]]) -> list[str]:
    """One labelled sentence per batch size and role, for every report format."""
    lines = []
    for bs in sorted(baselines):
        found = baselines[bs]
        same = {found[r].where for r in ROLES if r in found}
        if len(same) == 1 and len(found) == len(ROLES):
            b = found[FASTEST_DENSE]
            lines.append(
                f"batch {bs}: {FASTEST_DENSE} = {ORT_FP32} baseline = {b.where}, "
                f"p50 {b.p50_ms:.3f} ms."
            )
            continue
        for role in ROLES:
            got = found.get(role)
            if got is None:
                lines.append(f"batch {bs}: no {role} case was measured ({ROLE_HELP[role]}).")
            else:
                lines.append(f"batch {bs}: {role} baseline = {got.where}, p50 {got.p50_ms:.3f} ms.")
    return lines


def times(x: float | None) -> str:
    """A speed-up as text: `8.8x`, `1.05x`, `0.012x` (enough digits to read a small one)."""
    if x is None:
        return "-"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"
