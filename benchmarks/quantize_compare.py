"""Side by side, in one run: fp32, our int8 defaults, onnxruntime's plain `quantize_static`
defaults, and other variants, on the same ONNX model and the same calibration images.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantize_compare.py runs/lenet5-fp32 \
        --samples 300 [--keep-float /conv1/Conv] [--no-accuracy] [--json out.json]

Accuracy: top-1 on the validation split (decisions) and the test split (reporting), both in
onnxruntime. Latency: median ms per call at batch 1 and 32, all models measured interleaved in
one loop, so load from other processes hits them alike (absolute numbers on a shared machine are
noisy; ratios are the figure to read).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def ort_plain_defaults(src: Path, dst: Path, calib: np.ndarray, input_name: str) -> Path:
    """onnxruntime's `quantize_static` exactly as its README calls it: all defaults."""
    from onnxruntime.quantization import quantize_static

    from compress.quantization.calibration import make_reader

    quantize_static(str(src), str(dst), make_reader(input_name, calib))
    return dst


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", help="fp32 ONNX artifact directory (compress export)")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--keep-float", action="append", default=[])
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="extra row of ours with overrides, e.g. 'activation_type=int8,per_channel=false'",
    )
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--no-extras", action="store_true", help="skip dynamic and fp16 rows")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--json", default=None)
    return ap.parse_args()


def build_models(
    args: argparse.Namespace, fp32: Path, calib: np.ndarray, t: Path
) -> dict[str, Path]:
    """Every variant to compare, quantized from `fp32` with the same calibration images."""
    from compress.quantization import graph as qgraph
    from compress.quantization.ortrun import quiet_ort
    from compress.quantization.quantize import QuantizeConfig, quantize

    def ours(label: str, name: str, **kw: Any) -> None:
        models[label] = t / name
        quantize(fp32, QuantizeConfig(max_drop=None, latency=False, **kw), calib, t / name)

    models: dict[str, Path] = {"fp32": fp32}
    ours("ours: ptq-static defaults", "ours.onnx")
    with quiet_ort():
        models["onnxruntime quantize_static defaults"] = ort_plain_defaults(
            fp32, t / "ort.onnx", calib, qgraph.inspect(fp32).input_name
        )
    if args.keep_float:
        label = f"ours, {'+'.join(args.keep_float)} kept fp32"
        ours(label, "keep.onnx", keep_float=tuple(args.keep_float))
    for i, v in enumerate(args.variant):
        kw: dict[str, Any] = {}
        for item in v.split(","):
            key, _, val = item.partition("=")
            kw[key] = {"true": True, "false": False}.get(val.lower(), val)
        ours(f"ours, {v}", f"variant{i}.onnx", **kw)
    if not args.no_extras:
        if qgraph.inspect(fp32).nodes_of(qgraph.DYNAMIC_OPS):
            ours("ours: ptq-dynamic (MatMul/Gemm)", "dyn.onnx", method="ptq-dynamic")
        ours("ours: fp16", "fp16.onnx", method="fp16")
    return models


def measure(
    args: argparse.Namespace, models: dict[str, Path], calib: np.ndarray, bundle: Any, n: int
) -> list[dict[str, Any]]:
    """Size, interleaved latency at batch 1 and 32, and (unless --no-accuracy) top-1."""
    from compress.quantization import ortrun

    fp32 = models["fp32"]
    lat = ortrun.latencies(list(models.values()), calib[:64], (1, 32), runs=40, budget_s=20,
                            threads=args.threads)  # fmt: skip
    rows: list[dict[str, Any]] = []
    for (name, path), ms in zip(models.items(), lat, strict=True):
        row: dict[str, Any] = {
            "model": name,
            "bytes": path.stat().st_size,
            "size_ratio": round(path.stat().st_size / fp32.stat().st_size, 4),
            "latency_ms": ms,
        }
        if not args.no_accuracy:
            row["val_top1"] = ortrun.top1(path, bundle.loader("val"), n)
            row["test_top1"] = ortrun.top1(path, bundle.loader("test"), n)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], threads: int | None) -> None:
    load = os.getloadavg()
    print(f"load average during run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"onnxruntime threads: {threads or 'default'}")  # fmt: skip
    head = "| model | size | ratio | val top-1 | test top-1 | b1 ms | b32 ms | b1 vs fp32 | b32 vs fp32 |"
    print(head)
    print("|" + "---|" * 9)
    f1, f32 = rows[0]["latency_ms"][1], rows[0]["latency_ms"][32]
    for r in rows:
        acc = (
            (f"{100 * r['val_top1']:.2f} %", f"{100 * r['test_top1']:.2f} %")
            if "val_top1" in r
            else ("-", "-")
        )
        b1, b32 = r["latency_ms"][1], r["latency_ms"][32]
        print(
            f"| {r['model']} | {r['bytes'] / 1024:.1f} KiB | {r['size_ratio']:.3f}x | {acc[0]} | "
            f"{acc[1]} | {b1:.3f} | {b32:.3f} | {f1 / b1:.2f}x | {f32 / b32:.2f}x |"
        )


def main() -> None:
    args = parse_args()
    from compress.models.artifacts.artifact import read_card
    from compress.models.data.datasets import DataConfig, load_data
    from compress.quantization.calibration import calibration_inputs
    from compress.stages.common import data_config_for

    art = Path(args.artifact)
    card = read_card(art)
    spec = card.model_spec
    fp32 = art / "model.onnx"
    bundle = load_data(data_config_for(DataConfig(data_dir=args.data_dir), card), spec)
    calib = calibration_inputs(bundle.val, args.samples, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(args, fp32, calib, Path(tmp))
        rows = measure(args, models, calib, bundle, spec.num_classes)
    print_table(rows, args.threads)
    if args.json:
        load = os.getloadavg()
        Path(args.json).write_text(json.dumps({"load": load, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
