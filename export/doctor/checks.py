"""The doctor's checks: plain functions `(Diagnosis, GraphProto, OnnxInfo) -> list[Finding]`,
listed in report order in `CHECKS`. They only read facts already gathered (the graph, the
probe's session facts), so each is cheap and testable on a crafted graph.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from compress.export.doctor.diagnosis import FLOAT_COMPUTE, INT_COMPUTE, Diagnosis, Finding
from compress.export.environment import has_int8_dot_product, physical_cores
from compress.export.runtimes.runner import ORT_PROVIDERS

Check = Callable[[Diagnosis, Any, Any], list[Finding]]


def _check_session(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    err = d.session.get("error")
    if not err:
        return []
    return [
        Finding(
            "session",
            "problem",
            "onnxruntime could not run this model",
            err,
            "see the findings below for the cause; `compress bench` will fail the same way",
        )
    ]


def _check_isa(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    isa = ", ".join(k for k, v in d.isa.items() if v) or "no SIMD flags detected"
    severity, title, advice = _ISA_ADVICE[d.quantized, has_int8_dot_product()]
    return [Finding("cpu_int8", severity, title, f"{d.cpu}: {isa}", advice)]


# (quantized, int8 dot product) -> (severity, title, suggestion)
_ISA_ADVICE = {
    (True, False): (
        "warning",
        "int8 without VNNI/AMX/dot-product instructions: rarely faster than fp32",
        "keep fp32 (or prune) on this CPU; if you quantize, use reduce_range=True "
        "(7-bit weights) to avoid U8S8 saturation on AVX2, and measure with `compress bench`",
    ),
    (True, True): (
        "info",
        "this CPU has int8 dot-product instructions (VNNI/AMX/ARM dot)",
        "int8 kernels can beat fp32 here when Q/DQ pairs are fused; reduce_range is not "
        "needed with VNNI. Compare both with `compress bench`",
    ),
    (False, True): (
        "info",
        "fp32 model; int8 could help: the CPU has int8 dot-product instructions",
        "try static QDQ quantization and compare with `compress bench`",
    ),
    (False, False): (
        "info",
        "fp32 model; this CPU lacks int8 dot-product instructions, so int8 rarely pays",
        "prefer pruning (fewer channels) over int8 on this CPU",
    ),
}


def _check_conv_integer(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    n = d.op_counts.get("ConvInteger", 0)
    if not n:
        return []
    return [
        Finding(
            "conv_integer",
            "problem",
            f"{n} ConvInteger nodes (dynamic quantization of convolutions)",
            "activations are re-quantized at run time before each conv and the int32 result is "
            "cast back to float: nothing fuses, and older onnxruntime builds have no CPU kernel "
            "for int8-weight ConvInteger at all. One run on a shared 2-core EPYC (onnxruntime "
            "1.32, ResNet-18 64x64, batch 8): 3.7x slower than fp32",
            "use static quantization (QDQ, calibrated on real data) for convolutional models; keep "
            "dynamic quantization for MatMul/Gemm (op_types_to_quantize=['MatMul', 'Gemm'])",
        )
    ]


def _check_qdq(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    q, dq = d.op_counts.get("QuantizeLinear", 0), d.op_counts.get("DequantizeLinear", 0)
    if not q and not dq:
        return []
    compute = sum(d.op_counts.get(op, 0) for op in FLOAT_COMPUTE | INT_COMPUTE)
    pairs = _dq_q_pairs(graph)
    opt = d.session.get("optimized_ops") or {}
    inner = int(d.session.get("inner_qdq", 0))
    detail = (
        f"{q} QuantizeLinear + {dq} DequantizeLinear for {compute} compute nodes in the file; "
        f"{pairs} DequantizeLinear->QuantizeLinear chains (requantization)"
    )
    identities = d.op_counts.get("Identity", 0)
    if identities:
        detail += (
            f"; {identities} Identity nodes (constants the exporter shared) feed the graph, "
            "and a bias behind an Identity blocks the DQ->Conv->Q fusion"
        )
    advice = (
        "run onnxruntime.quantization.quant_pre_process before quantize_static so that "
        "onnxruntime can fuse each DQ->op->Q into one int8 kernel"
    )
    if opt:
        fused = sum(opt.get(op, 0) for op in INT_COMPUTE)
        detail += (
            f"; after onnxruntime's fusion: {fused} int8 compute nodes, {inner} Q/DQ nodes "
            "left inside the graph"
        )
        if fused and not inner and not pairs:  # the advice would contradict the facts above
            advice = (
                "nothing to do: every DQ->op->Q fused into an int8 kernel (quant_pre_process "
                "before quantize_static, as `compress quantize` does, keeps it so)"
            )
    out = [Finding("qdq", "info", "QDQ-quantized graph", detail, advice)]
    if inner or pairs:
        title = (
            f"{inner} Q/DQ nodes remain inside the graph after onnxruntime's fusion"
            if inner
            else f"{pairs} DequantizeLinear->QuantizeLinear chains (requantization) in the file"
        )
        out.append(
            Finding(
                "unfused_qdq",
                "warning",
                title,
                "each one converts a whole activation tensor between float and int8 at run time",
                "quantize the ops between them too (or exclude the float ops with "
                "nodes_to_exclude so no Q/DQ is inserted around them)",
            )
        )
    return out


def _dq_q_pairs(graph: Any) -> int:
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return sum(
        1
        for n in graph.node
        if n.op_type == "QuantizeLinear" and producer.get(n.input[0]) == "DequantizeLinear"
    )


def _check_fp32_islands(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    if not d.quantized:
        return []
    floats = d.session.get("float_compute") or []
    if not floats:
        return []
    shown = ", ".join(floats[:6]) + (" ..." if len(floats) > 6 else "")
    return [
        Finding(
            "fp32_islands",
            "warning",
            f"{len(floats)} compute nodes still run in fp32 inside a quantized graph",
            f"after onnxruntime's optimizations: {shown}",
            "quantize these ops as well (check op_types_to_quantize), or accept them and "
            "make sure the float<->int8 conversions around them are few",
        )
    ]


def _check_ep_assignment(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    per = d.session.get("node_providers") or {}
    if not per:
        return []
    wanted = ORT_PROVIDERS[d.runtime][0]
    others = {p: ops for p, ops in per.items() if p != wanted}
    total = sum(sum(ops.values()) for ops in per.values())
    if not others:
        return [Finding("ep_assignment", "ok", f"all {total} profiled nodes ran on {wanted}")]
    moved = {op: n for ops in others.values() for op, n in ops.items()}
    return [
        Finding(
            "ep_assignment",
            "problem" if wanted not in per else "warning",
            f"{sum(moved.values())} of {total} nodes did not run on {wanted}",
            "ran elsewhere: " + ", ".join(f"{op} x{n}" for op, n in moved.items()),
            "every switch between providers copies tensors; replace or remove those ops, or "
            "export with an opset whose versions of them the provider supports",
        )
    ]


def _check_channels(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    first_in = info.input_shape[1] if len(info.input_shape) > 1 else None
    odd = []
    for n in graph.node:
        if n.op_type not in ("Conv", "QLinearConv", "ConvInteger") or len(n.input) < 2:
            continue
        w = shapes.get(n.input[3 if n.op_type == "QLinearConv" else 1])
        if not w or len(w) != 4:
            continue
        group = next((int(a.i) for a in n.attribute if a.name == "group"), 1)
        out_c, in_c = w[0], w[1] * group
        bad = [f"out {out_c}"] if out_c % 8 else []
        if in_c % 8 and in_c != first_in:
            bad.append(f"in {in_c}")
        if bad:
            odd.append(f"{n.name or n.op_type} ({', '.join(bad)})")
    if not odd:
        return []
    shown = ", ".join(odd[:6]) + (" ..." if len(odd) > 6 else "")
    return [
        Finding(
            "channels",
            "warning" if len(odd) > 1 else "info",
            f"{len(odd)} convolutions have channel counts that are not multiples of 8",
            shown,
            "SIMD kernels work in blocks of 8 (AVX2) or 16 (AVX-512) channels, so odd widths "
            "leave lanes idle; when pruning, round channels to multiples of 8 (torch-pruning "
            "round_to=8)",
        )
    ]


def _check_dynamic_shapes(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    dims = info.input_shape
    dynamic = [i for i, x in enumerate(dims) if not (isinstance(x, int) and x > 0)]
    if not dynamic:
        return [Finding("dynamic_shapes", "ok", f"static input shape {dims}")]
    if dynamic == [0]:
        return [
            Finding(
                "dynamic_shapes",
                "info",
                f"dynamic batch dimension {dims}",
                "fine for onnxruntime CPU/CUDA; TensorRT builds an engine per shape profile",
                "export with --static (fixed batch) for the TensorRT runtime or a fixed-size server",
            )
        ]
    return [
        Finding(
            "dynamic_shapes",
            "warning",
            f"dynamic non-batch dimensions {dims}",
            "unknown spatial sizes block shape-specialized fusions and memory planning",
            "export with a fixed --input-size",
        )
    ]


def _check_fp16_on_cpu(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    fp16 = sum(1 for t in graph.initializer if t.data_type == 10)  # TensorProto.FLOAT16
    if not fp16 or d.runtime != "ort-cpu":
        return []
    return [
        Finding(
            "fp16_on_cpu",
            "warning",
            f"fp16 weights ({fp16} tensors) on the CPU runtime",
            "onnxruntime's CPU provider has few fp16 kernels on x86: it inserts Cast nodes and "
            "computes in fp32, so the file is smaller but not faster",
            "use fp16 on a GPU (--runtime ort-cuda); on CPU keep fp32 or quantize to int8",
        )
    ]


def _check_threads(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    cores = physical_cores()
    if d.threads > cores:
        return [
            Finding(
                "threads",
                "warning",
                f"{d.threads} threads on {cores} physical cores",
                "oversubscribed threads spin and preempt each other",
                f"use --threads {cores} or fewer",
            )
        ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    detail = f"load average {load:.2f}" + (" (busy: latency will be noisy)" if load > cores else "")
    return [Finding("threads", "info", f"{d.threads} intra-op threads, {cores} cores", detail)]


def _check_hotspots(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    times: dict[str, float] = d.session.get("time_by_op") or {}
    total = sum(times.values())
    if not total:
        return []
    top = sorted(times.items(), key=lambda kv: -kv[1])[:5]
    return [
        Finding(
            "hotspots",
            "info",
            "where the time goes (profiled, batch 1): "
            + ", ".join(f"{op} {100 * t / total:.0f} %" for op, t in top),
            f"{total / 1e3:.2f} ms of kernel time per run",
            "shrink the layers behind the top op type first (pruning helps Conv/Gemm-bound models)",
        )
    ]


CHECKS: tuple[Check, ...] = (
    _check_session,
    _check_isa,
    _check_conv_integer,
    _check_qdq,
    _check_fp32_islands,
    _check_ep_assignment,
    _check_channels,
    _check_dynamic_shapes,
    _check_fp16_on_cpu,
    _check_threads,
    _check_hotspots,
)
