"""The machine's limit: peak fp32 GEMM GFLOP/s (torch and onnxruntime MatMul, all cores) and the
fraction of it our exported ResNet-50 reaches at batch 32 on onnxruntime CPU.

    python benchmarks/gemm_peak.py [--size 2048] [--threads 2] [--json out.json]

ResNet-50 uses random weights at 224x224 (speed does not depend on values); inputs are synthetic.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from compress.export.bench.timing import time_calls
from compress.export.runtimes.session import open_session


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median seconds per call after one warm-up call (compress.export.bench.timing, the loop every
    latency figure of the toolkit uses)."""
    return time_calls(fn, warmup=1, max_runs=runs).median_ms / 1e3


def torch_gemm(n: int, threads: int, runs: int) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _median_seconds(lambda: a @ b, runs) / 1e9


def _session(path: Path, threads: int) -> ort.InferenceSession:
    return open_session(path, threads)


def ort_gemm(n: int, threads: int, runs: int, tmp: Path) -> float:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp / "gemm.onnx")
    sess = _session(tmp / "gemm.onnx", threads)
    x = {
        "a": np.random.randn(n, n).astype(np.float32),
        "b": np.random.randn(n, n).astype(np.float32),
    }
    return 2 * n**3 / _median_seconds(lambda: sess.run(None, x), runs) / 1e9


def resnet50_gflops(threads: int, runs: int, batch: int, tmp: Path) -> tuple[float, float, int]:
    from compress.export.onnx.convert import ExportConfig, export_onnx
    from compress.models.zoo.registry import create_model

    model = create_model("resnet50", num_classes=1000, in_channels=3, input_size=224).eval()
    export_onnx(model, tmp / "r50.onnx", ExportConfig())
    macs = _macs(model)
    sess = _session(tmp / "r50.onnx", threads)
    name = sess.get_inputs()[0].name
    x = np.random.randn(batch, 3, 224, 224).astype(np.float32)
    sec = _median_seconds(lambda: sess.run(None, {name: x}), runs)
    return 2 * macs * batch / sec / 1e9, sec * 1e3, macs


def _macs(model: torch.nn.Module) -> int:
    from compress.pruning.flops import count_ops  # the counter the reports use

    return count_ops(model, torch.randn(1, 3, 224, 224)).macs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = torch_gemm(args.size, args.threads, args.runs)
        o = ort_gemm(args.size, args.threads, args.runs, tmp)
        r, ms, macs = resnet50_gflops(args.threads, max(3, args.runs // 3), args.batch, tmp)
    peak = max(t, o)
    out = {
        "gemm_size": args.size,
        "threads": args.threads,
        "torch_gemm_gflops": round(t, 1),
        "ort_matmul_gflops": round(o, 1),
        "resnet50_batch": args.batch,
        "resnet50_ms": round(ms, 1),
        "resnet50_macs_per_image": macs,
        "resnet50_gflops": round(r, 1),
        "fraction_of_peak": round(r / peak, 3),
    }
    print(
        f"| torch GEMM GFLOP/s | ORT MatMul GFLOP/s | ResNet-50 b{args.batch} ms | "
        "ResNet-50 GFLOP/s | fraction of peak |\n|---|---|---|---|---|"
    )
    print(f"| {t:.1f} | {o:.1f} | {ms:.1f} | {r:.1f} | {100 * r / peak:.0f} % |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
