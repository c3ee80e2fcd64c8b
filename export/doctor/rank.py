"""The doctor's measured verdict: every ONNX runtime x precision the file and CPU allow, timed at
batch 1 (bench's interleaved loop); the winner's finding says why it wins (effective precision,
int8 dot-product instructions, or the runtime's kernels)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from compress.export.doctor.diagnosis import Finding, RuntimeTiming
from compress.export.runtimes.input_size import spec_from_onnx
from compress.models.notes import Note
from compress.models.zoo.registry import ModelSpec

RANK_SECONDS = 0.4  # per case, split over RANK_ROUNDS interleaved rounds
RANK_ROUNDS = 2
spec_for_ranking = spec_from_onnx  # a spec from the file's input; None when C/H are symbolic


def artifact_precision(info: Any, quantized: bool) -> str:
    """int8 / fp16 / fp32: the file's compress metadata, else int8 when it holds Q/DQ ops."""
    from compress.export.onnx.file import META_PREFIX

    declared = info.metadata.get(META_PREFIX + "precision")
    return str(declared) if declared else "int8" if quantized else "fp32"


def rank_runtimes(
    path: str | Path, spec: ModelSpec, artifact_precision: str, threads: int
) -> tuple[list[RuntimeTiming], Finding]:
    """(rows fastest first, the finding naming the winner and why)."""
    from compress.export.bench.measure import BenchConfig, BenchModel, benchmark
    from compress.export.runtimes.runner import ONNX_RUNTIMES, available_runtimes

    runtimes = available_runtimes(ONNX_RUNTIMES)
    cfg = BenchConfig(
        runtimes=tuple(runtimes),
        batch_sizes=(1,),
        threads=threads,
        warmup=2,
        seconds=RANK_SECONDS,
        min_iters=4,
        rounds=RANK_ROUNDS,
        precisions=("fp32", "bf16") if artifact_precision == "fp32" else (artifact_precision,),
    )
    card = SimpleNamespace(precision=artifact_precision)  # what BenchModel reads of a card
    model = BenchModel(label=Path(path).name, spec=spec, onnx_path=str(path), card=card)
    report = benchmark([model], cfg)
    rows = [
        RuntimeTiming(r.runtime, r.precision, r.effective_precision or r.precision, r.p50_ms)
        for r in sorted(report.results, key=lambda r: r.p50_ms)
    ]
    return rows, verdict(rows, report.skipped, report.notes)


def verdict(rows: list[RuntimeTiming], skipped: list[dict[str, str]], notes: list[Note]) -> Finding:
    """The finding: fastest pair, its ratio to onnxruntime fp32, and the reason it wins."""
    if not rows:
        failed = [n.text for n in notes if n.severity == "error"]
        return Finding(
            "fastest_runtime",
            "warning",
            "no runtime x precision could be timed here",
            detail="; ".join(failed[:3]),
        )
    best = rows[0]
    ort = next((r for r in rows if r.runtime == "ort-cpu"), None)
    ratio = f", {ort.p50_ms / best.p50_ms:.2f}x faster than onnxruntime" if ort else ""
    ratio = "" if ort is best else ratio
    table = ", ".join(
        f"{r.runtime} {r.precision}"
        + (f" (ran {r.effective_precision})" if r.effective_precision != r.precision else "")
        + f" {r.p50_ms:.2f} ms"
        for r in rows
    )
    skips = "; ".join(f"{s['runtime']} {s['precision']}: {s['reason']}" for s in skipped[:4])
    return Finding(
        "fastest_runtime",
        "info",
        f"fastest here: {best.runtime} {best.precision} at batch 1, {best.p50_ms:.2f} ms p50{ratio}",
        detail=f"why: {_why(best, ort)}. Measured (batch 1, interleaved): {table}."
        + (f" Not run: {skips}." if skips else ""),
        suggestion=f"deploy on {best.runtime} at {best.precision} "
        f"(`compress bench -r {best.runtime} --precision {best.precision}` to confirm "
        "at your batch size)",
    )


def _why(best: RuntimeTiming, ort: RuntimeTiming | None) -> str:
    from compress.export.environment import INT8_DOT_PRODUCT, isa_flags

    isa = isa_flags()
    eff, runtime = best.effective_precision, best.runtime
    if eff == "bf16":
        units = "AMX" if isa.get("amx_bf16") else "AVX512-BF16" if isa.get("avx512_bf16") else "GPU"
        how = "OpenVINO chose bf16 itself" if best.precision == "fp32" else "bf16 was asked for"
        return f"it computes in bf16 on this CPU's native {units} units ({how}): half fp32's bytes"
    if best.precision == "int8":
        dot = [k for k in INT8_DOT_PRODUCT if isa.get(k)]
        via = f"with {', '.join(dot)}" if dot else "(no int8 dot-product instructions here)"
        return f"the int8 graph runs on {runtime}'s int8 kernels {via}"
    if runtime.startswith("openvino"):
        return "OpenVINO's fused kernels (LATENCY hint, oneDNN) beat onnxruntime at this precision"
    if ort is best:
        return "onnxruntime's kernels were fastest for this graph; no other pair beat them here"
    return f"{runtime} measured fastest"
