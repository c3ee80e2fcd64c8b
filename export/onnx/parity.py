"""Parity gates: does the exported model compute what its PyTorch parent computes?

Tolerances as mature exporters use them (Optimum, the torch.onnx tutorial): fp32 within atol
1e-4 / rtol 1e-3 with the same top-1; fp16 within 1e-2 and cosine >= 0.999. Top-1 is tie-aware:
a differing argmax within the tolerance of the reference's top logit is no disagreement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from compress.models.errors import UsageError
from compress.models.jsontypes import JsonObject

ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """A gate: elementwise `|a - b| <= atol + rtol * |a|`, optional cosine and top-1 floors."""

    atol: float
    rtol: float
    min_cosine: float | None
    min_top1_agreement: float | None


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=None, min_top1_agreement=1.0),
    "fp16": Tolerance(atol=1e-2, rtol=0.0, min_cosine=0.999, min_top1_agreement=None),
}


def tolerance_for(precision: str) -> Tolerance:
    if precision not in TOLERANCES:
        raise UsageError(
            f"no parity gate for precision {precision!r}; choose from {', '.join(TOLERANCES)}"
        )
    return TOLERANCES[precision]


@dataclass
class ParityReport:
    """What the gate measured and whether it passed; stored in the card under gates.parity."""

    precision: str
    inputs: str  # "val" (real samples) or "random"
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    mean_abs_diff: float
    min_cosine: float
    top1_agreement: float
    top1_agreement_tie_aware: float
    tolerance: dict[str, Any]
    passed: bool
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return asdict(self)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED (" + "; ".join(self.failures) + ")"
        return (
            f"{self.precision} parity {verdict} on {self.samples} {self.inputs} inputs: "
            f"max abs {self.max_abs_diff:.2e}, max rel {self.max_rel_diff:.2e}, "
            f"cosine {self.min_cosine:.6f}, top-1 agreement {100 * self.top1_agreement:.1f} %"
        )


def compare(
    reference: np.ndarray, candidate: np.ndarray, precision: str = "fp32", inputs: str = "random"
) -> ParityReport:
    """Compare two (N, classes) logit arrays under the gate for `precision`."""
    tol = tolerance_for(precision)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    if ref.shape != cand.shape:
        raise UsageError(f"parity: output shapes differ: {ref.shape} vs {cand.shape}")
    diff = np.abs(ref - cand)
    finite = bool(np.isfinite(cand).all())
    rel = diff / np.maximum(np.abs(ref), 1e-12)
    cos = _row_cosine(ref, cand)
    agree, tie_aware = _top1_agreement(ref, cand, tol)
    failures = []
    if not finite:
        failures.append("candidate output has NaN/Inf")
    bound = tol.atol + tol.rtol * np.abs(ref)
    if (diff > bound).any():
        worst = int(np.argmax(diff - bound))
        failures.append(
            f"{int((diff > bound).sum())} values outside atol {tol.atol:g} + rtol {tol.rtol:g} "
            f"(worst |diff| {diff.flat[worst]:.2e} at |ref| {abs(ref.flat[worst]):.2e})"
        )
    if tol.min_cosine is not None and cos < tol.min_cosine:
        failures.append(f"cosine {cos:.6f} < {tol.min_cosine}")
    if tol.min_top1_agreement is not None and tie_aware < tol.min_top1_agreement:
        failures.append(
            f"top-1 agreement {100 * tie_aware:.2f} % < {100 * tol.min_top1_agreement:g} %"
        )
    return ParityReport(
        precision=precision,
        inputs=inputs,
        samples=len(ref),
        max_abs_diff=float(diff.max() if diff.size else 0.0),
        max_rel_diff=float(rel.max() if rel.size else 0.0),
        mean_abs_diff=float(diff.mean() if diff.size else 0.0),
        min_cosine=float(cos),
        top1_agreement=agree,
        top1_agreement_tie_aware=tie_aware,
        tolerance=asdict(tol),
        passed=not failures,
        failures=failures,
    )


def check_parity(
    reference: ArrayFn,
    candidate: ArrayFn,
    batches: Iterable[np.ndarray],
    precision: str = "fp32",
    inputs: str = "random",
) -> ParityReport:
    """Run both predictors on the same batches and compare all their outputs at once."""
    refs, cands = [], []
    for x in batches:
        refs.append(np.asarray(reference(x)))
        cands.append(np.asarray(candidate(x)))
    if not refs:
        raise UsageError("parity: no input batches")
    return compare(np.concatenate(refs), np.concatenate(cands), precision, inputs)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest per-sample cosine similarity (the worst sample decides)."""
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
    return float(cos.min()) if len(cos) else 1.0


def _top1_agreement(ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> tuple[float, float]:
    """(plain, tie-aware) fraction of samples whose top-1 class matches."""
    if ref.shape[1] < 2 or not len(ref):
        return 1.0, 1.0
    r, c = ref.argmax(1), cand.argmax(1)
    same = r == c
    rows = np.arange(len(ref))
    gap = ref[rows, r] - ref[rows, c]
    tie = gap <= tol.atol + tol.rtol * np.abs(ref[rows, r])
    return float(same.mean()), float((same | tie).mean())
