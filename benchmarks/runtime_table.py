"""Runtime x precision x {dense, pruned 2x, dense + int8, pruned + int8}: one interleaved run.

    python benchmarks/runtime_table.py --model lenet5 --batch-sizes 1,32 --md out.md --json out.json
    python benchmarks/runtime_table.py --model resnet50 --input-size 224 --batch-sizes 1

Weights are random (SYNTHETIC: latency does not depend on their values; accuracy is not
measured here) and inputs are synthetic. The pruned model is the dense one pruned in place by
`compress.pruning.prune` at `--ratio` (0.5: every prunable layer loses half its channels, the
library behind `compress prune --ratio 0.5`, without fine-tuning); int8 is `compress quantize
--method ptq-static` (QDQ, the CPU's default int8 settings) calibrated on synthetic inputs. All
cases run in one `compress.export.bench.measure` benchmark with `--rounds` interleaved rounds, so load from other
processes hits every case alike. Speed-ups are against the fastest dense (fp32 or bf16) case
found on this machine at the same batch size, and against onnxruntime fp32 dense, each labelled.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from compress.export.bench.measure import BenchConfig, BenchModel, benchmark
from compress.export.bench.report import environment_line
from compress.export.bench.results import BenchReport
from compress.export.onnx.convert import ExportConfig, export_onnx
from compress.export.runtimes.precision import cpu_bf16
from compress.models.data.datasets import synthetic_batch
from compress.models.zoo.registry import create_model, spec_of
from compress.pruning.config import PruneConfig
from compress.pruning.prune import prune
from compress.quantization.quantize import QuantizeConfig, quantize

log = logging.getLogger("runtime_table")
VARIANTS = ("dense", "pruned", "dense+int8", "pruned+int8")


def build_models(args: argparse.Namespace, tmp: Path) -> list[BenchModel]:
    """The four variants: PyTorch modules (dense, pruned) with their ONNX, and the int8 files."""
    kw = {"num_classes": args.num_classes, "in_channels": args.in_channels}
    if args.input_size:
        kw["input_size"] = args.input_size
    torch.manual_seed(0)
    dense = create_model(args.model, **kw).eval()
    pruned = create_model(args.model, **kw).eval()
    pruned.load_state_dict(dense.state_dict())
    spec = spec_of(dense)
    prune(pruned, PruneConfig(ratio=args.ratio))
    calib = synthetic_batch(spec, args.calib).numpy()
    qcfg = QuantizeConfig(method="ptq-static", samples=args.calib, max_drop=None, latency=False)
    models = []
    for name, module in (("dense", dense), ("pruned", pruned)):
        path = tmp / f"{name}.onnx"
        export_onnx(module, path, ExportConfig())
        fp32 = SimpleNamespace(precision="fp32")
        models.append(BenchModel(name, spec, module, str(path), fp32, torch_bytes=_bytes(module)))
        qpath = tmp / f"{name}-int8.onnx"
        quantize(path, qcfg, calib, qpath)
        int8 = SimpleNamespace(precision="int8")
        models.append(BenchModel(f"{name}+int8", spec, None, str(qpath), int8))
    return sorted(models, key=lambda m: VARIANTS.index(m.label))


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def tables(report: BenchReport) -> dict[int, dict[str, Any]]:
    """Per batch size: {columns, rows: variant -> {column: p50}, baselines}."""
    out: dict[int, dict[str, Any]] = {}
    for bs in dict.fromkeys(r.batch_size for r in report.results):
        rows = [r for r in report.results if r.batch_size == bs]
        cols = list(dict.fromkeys(_col(r) for r in rows if r.precision != "int8"))
        cols += [c for c in dict.fromkeys(_col(r) for r in rows) if c not in cols]
        cells = {v: {_col(r): r.p50_ms for r in rows if r.model == v} for v in VARIANTS}
        dense = [r for r in rows if r.model == "dense"]
        best = min(dense, key=lambda r: r.p50_ms) if dense else None
        ort = next((r for r in dense if r.runtime == "ort-cpu" and r.precision == "fp32"), None)
        out[bs] = {"columns": cols, "cells": cells, "best_dense": best, "ort_fp32": ort}
    return out


def _col(r: Any) -> str:
    prec = "int8" if r.precision == "int8" else r.precision
    ran = r.effective_precision
    tag = f" (ran {ran})" if r.precision != "int8" and ran and ran != r.precision else ""
    return f"{r.runtime} {prec}{tag}"


def markdown(report: BenchReport, args: argparse.Namespace) -> str:
    """The tables, environment and ISA, and every skipped pair with its reason."""
    lines = [
        f"### {args.model} at {report.models[0]['input_shape']} — runtime x precision "
        f"(p50 ms, {report.config['threads']} threads, {args.rounds} interleaved rounds)",
        "",
        "SYNTHETIC: random weights and random inputs (latency only, no accuracy). "
        f"pruned = `prune --ratio {args.ratio}` without fine-tuning; int8 = ptq-static QDQ.",
        f"Machine: {environment_line(report)}. bf16 on this CPU: "
        f"{cpu_bf16() or 'native (avx512_bf16/amx_bf16)'}.",
        "",
    ]
    for bs, t in tables(report).items():
        best, ort = t["best_dense"], t["ort_fp32"]
        lines.append(
            f"**batch {bs}** — fastest dense baseline: "
            + (f"{_col(best)} {best.p50_ms:.2f} ms" if best else "none")
            + ""
        )
        lines.append("")
        lines.append(
            "| model | "
            + " | ".join(t["columns"])
            + " | best | vs fastest dense | vs ort-cpu fp32 dense |"
        )
        lines.append("|---" * (len(t["columns"]) + 4) + "|")
        for v, cells in t["cells"].items():
            if not cells:
                continue
            fast = min(cells.values())
            vs_best = f"{best.p50_ms / fast:.2f}x" if best else "-"
            vs_ort = f"{ort.p50_ms / fast:.2f}x" if ort else "-"
            row = [f"{cells[c]:.2f}" if c in cells else "-" for c in t["columns"]]
            lines.append(f"| {v} | " + " | ".join(row) + f" | {fast:.2f} | {vs_best} | {vs_ort} |")
        lines.append("")
    trivial = ("runs as int8", "not a run-time cast", "no PyTorch module")
    skipped = {
        (s["runtime"], s["precision"], s["reason"])
        for s in report.skipped
        if not any(t in s["reason"] for t in trivial)
    }
    if skipped:
        lines.append(
            "Not run here: " + "; ".join(f"{r} {p}: {why}" for r, p, why in sorted(skipped)) + "."
        )
    compile_notes = [n for n in report.notes if "compiled in" in n or "FAILED" in n]
    lines += [f"- {n}" for n in compile_notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--in-channels", type=int, default=None)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--runtimes", default="torch,torch-compile,ort-cpu,openvino")
    ap.add_argument("--precisions", default="fp32,bf16,int8")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--calib", type=int, default=32, help="synthetic calibration images")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=3.0, help="per case, over all rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--md")
    ap.add_argument("--json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.in_channels is None:
        args.in_channels = 3 if args.model != "lenet5" else 1
    cfg = BenchConfig(
        runtimes=tuple(args.runtimes.split(",")),
        batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
        threads=args.threads,
        seconds=args.seconds,
        rounds=args.rounds,
        precisions=tuple(args.precisions.split(",")),
    )
    with tempfile.TemporaryDirectory(prefix="runtime-table-") as tmp:
        models = build_models(args, Path(tmp))
        report = benchmark(models, cfg, progress=lambda d, t, w: log.info("[%d/%d] %s", d, t, w))
    md = markdown(report, args)
    print(md)
    if args.md:
        Path(args.md).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1))


if __name__ == "__main__":
    main()
