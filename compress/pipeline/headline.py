"""The report's headline: final artifact, size ratio, accuracy change, speed-ups, gates, and a
verdict derived from them (e.g. "pruning + int8 buys 10.2x size, not speed, on this CPU")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from compress.export.bench.baseline import FASTEST_DENSE, ROLES, times
from compress.export.bench.report import markdown_table
from compress.models.jsontypes import JsonObject

NOISE = 0.05  # speed-ups within 5 % of 1x are "no faster", not a loss or gain
WORTH = 1.5  # a size ratio below this is not "buying size"
STEP_NAMES = {"prune": "pruning", "distill": "distillation", "export": "ONNX export"}


@dataclass
class SplitChange:
    """Top-1 of the baseline and of the final artifact on one split, and the change in points."""

    baseline: float | None
    final: float | None
    delta_pt: float | None


@dataclass
class BestCase:
    """The final artifact's fastest case at one batch size and its speed-up vs the fastest
    dense case."""

    batch: str
    case: str
    speedup: float


@dataclass
class Headline:
    """What the run delivered (`final_stage` None: no stage produced a model)."""

    verdict: str
    gates: list[str]
    final_stage: str | None = None
    artifact: str | None = None
    format: str = ""
    bytes: int | None = None
    base_bytes: int | None = None
    size_ratio: float | None = None
    accuracy: dict[str, SplitChange] = field(default_factory=dict)
    speedups: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: list[BestCase] = field(default_factory=list)
    deployed: str | None = None
    gates_passed: bool = True

    def to_dict(self) -> JsonObject:
        """The report.json form."""
        if self.final_stage is None:
            return {"verdict": self.verdict, "gates": self.gates}
        out = asdict(self)
        out["best"] = [
            {"batch": b.batch, "case": b.case, FASTEST_DENSE: b.speedup} for b in self.best
        ]
        return out


def headline(
    rows: list[dict[str, Any]],
    gates: list[dict[str, Any]],
    env: dict[str, Any] | None = None,
    records: list[dict[str, Any]] | None = None,
) -> Headline:
    """The headline facts of a run: its stage rows, gates, environment and stage records."""
    if not rows:
        return Headline("No stage produced a model.", gate_lines(gates))
    base, final = rows[0], rows[-1]
    best = [(bs, *best_speedup(final, bs)) for bs in _batches(final)]
    best = [b for b in best if b[1]]
    return Headline(
        verdict=verdict(rows, best, env or {}),
        gates=gate_lines(gates),
        final_stage=final["stage"],
        artifact=final.get("artifact"),
        format=f"{final['format']} {final['precision']}",
        bytes=final["bytes"],
        base_bytes=base["bytes"],
        size_ratio=final["size_ratio"],
        accuracy={
            split: SplitChange(
                base[f"{split}_top1"],
                final[f"{split}_top1"],
                _delta(base[f"{split}_top1"], final[f"{split}_top1"]),
            )
            for split in ("val", "test")
        },
        speedups=final["speedups"],
        best=[BestCase(bs, name, x) for bs, name, x in best],
        deployed=deployed(records or []),
        gates_passed=all(g["passed"] for g in gates),
    )


def best_speedup(row: dict[str, Any], bs: str, role: str = FASTEST_DENSE) -> tuple[str, float]:
    """The row's fastest case at batch `bs` and its speed-up vs `role` ('', 0.0 if none)."""
    got = [(name, v[role]) for name, by in row["speedups"].items() if (v := by.get(bs)) and v[role]]
    return max(got, key=lambda t: t[1]) if got else ("", 0.0)


def gate_lines(gates: list[dict[str, Any]]) -> list[str]:
    """One line per quality gate: its budget, the drop measured, the verdict."""
    return [
        f"{g['gate']}: max_drop {g['max_drop']} pt, drop "
        + ("-" if g.get("drop") is None else f"{g['drop']:.2f}")
        + f" pt — {'passed' if g['passed'] else 'FAILED'}"
        for g in gates
    ] or ["none configured"]


def deployed(records: list[dict[str, Any]]) -> str | None:
    """What a deploy stage chose, in one line (None when the run has no deploy stage)."""
    rec = next((r for r in reversed(records) if r.get("kind") == "deploy"), None)
    s = (rec or {}).get("summary") or {}
    if not s.get("runtime"):
        return None
    text = f"{s['runtime']} {s.get('precision', '')}, {s.get('threads', '?')} threads"
    up = s.get("speedup") or {}
    if up.get("p50_ms") is not None:
        text += f"; p50 {up['p50_ms']} ms at batch {up.get('batch_size', '?')}"
    for key, role in (("vs_fastest_dense", "the fastest dense case"), ("vs_ort_fp32", "ORT fp32")):
        if isinstance(v := up.get(key), dict) and v.get("speedup"):
            text += f"; {times(v['speedup'])} vs {role} ({v.get('baseline', '?')})"
    return text + (f" → {s['deployed']}" if s.get("deployed") else "")


def _batches(row: dict[str, Any]) -> list[str]:
    return sorted({bs for by in row["speedups"].values() for bs in by}, key=int)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(100 * (b - a), 2)


def _what(rows: list[dict[str, Any]]) -> str:
    """`pruning + distillation + int8`: the steps that made the final artifact."""
    steps = []
    for r in rows[1:]:
        step = r["precision"] if r["kind"] == "quantize" else STEP_NAMES.get(r["kind"], r["kind"])
        if step not in steps:
            steps.append(step)
    return " + ".join(steps) or rows[-1]["stage"]


def verdict(rows: list[dict[str, Any]], best: list[tuple[str, str, float]], env: dict) -> str:
    """One sentence from the numbers: does the final artifact buy size, speed, both, neither?"""
    final = rows[-1]
    what, size = _what(rows), final["size_ratio"] or 0.0
    cpu = f"this CPU ({env['cpu']})" if env.get("cpu") else "this machine"
    size_txt = f"{size:.1f}x size" if size >= WORTH else ""
    if not best:
        text = f"{what} buys {size_txt or f'{size:.2f}x size'}; speed was not measured (no bench stage)"
    else:
        bs, name, x = max(best, key=lambda b: b[2])
        speed_txt = f"{times(x)} speed" if x >= 1 + NOISE else ""
        bought = {  # (buys size, buys speed) -> what the sentence says it buys
            (True, True): f"{size_txt} and {speed_txt}",
            (True, False): f"{size_txt}, not speed,",
            (False, True): f"{speed_txt}, not size ({size:.2f}x),",
            (False, False): f"neither size ({size:.2f}x) nor speed",
        }[(bool(size_txt), bool(speed_txt))]
        how = f"at best {times(x)} the fastest dense case ({name}, batch {bs})"
        text = f"{what} buys {bought} on {cpu}: {how}"
    d = _delta(rows[0]["test_top1"], final["test_top1"])
    if d is not None:
        text += f", for {d:+.2f} pt test top-1"
    return text + "."


def headline_markdown(h: Headline) -> str:
    """The headline as Markdown: the verdict, a facts table, the speed-up table."""
    gates = [("gate", g) for g in h.gates]
    if h.final_stage is None:
        return f"**Verdict:** {h.verdict}\n\n{markdown_table(['what', 'value'], gates)}"
    table = markdown_table(["what", "value"], [*facts(h), *gates])
    speed = "Speed-up of the final artifact (p50, synthetic input):"
    return f"**Verdict:** {h.verdict}\n\n{table}\n\n{speed}\n\n{markdown_table(*speedup_table(h))}"


def facts(h: Headline) -> list[tuple[str, str]]:
    """(what, value) rows: artifact, size, accuracy change (the gates are listed apart)."""
    out = [("final artifact", f"{h.final_stage} ({h.format}): {h.artifact}")]
    if h.deployed:
        out.append(("deployed", h.deployed))
    if h.size_ratio:
        out.append(("size", f"{h.size_ratio:.2f}x smaller ({_kb(h.base_bytes)} → {_kb(h.bytes)})"))
    for split, acc in h.accuracy.items():
        if acc.delta_pt is not None and acc.baseline is not None and acc.final is not None:
            change = f"{100 * acc.baseline:.2f} → {100 * acc.final:.2f} % ({acc.delta_pt:+.2f} pt)"
            out.append((f"{split} top-1 vs baseline", change))
    return out


def speedup_table(h: Headline) -> tuple[list[str], list[list[str]]]:
    """runtime × batch rows: p50 and the speed-up vs each baseline."""
    head = ["runtime", "batch", "p50 ms", *(f"vs {role}" for role in ROLES)]
    body = [
        [name, bs, f"{v['p50_ms']:.3f}", *(times(v.get(role)) for role in ROLES)]
        for name, by in sorted(h.speedups.items())
        for bs, v in sorted(by.items(), key=lambda kv: int(kv[0]))
    ]
    return head, body


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KB"
