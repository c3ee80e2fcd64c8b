"""The doctor's checks: `(Diagnosis, GraphProto, OnnxInfo) -> list[Finding]`, in report order in
`CHECKS`; they only read facts already gathered, so each is cheap and testable on a fake graph."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from compress.export.doctor.diagnosis import FLOAT_COMPUTE, INT_COMPUTE, Diagnosis, Finding
from compress.export.environment import has_int8_dot_product, physical_cores
from compress.export.runtimes.runner import ORT_PROVIDERS

Check = Callable[[Diagnosis, Any, Any], list[Finding]]

# finding key -> (severity, title, detail, suggestion); `{names}` are filled at run time and the
# key's part before "." is the finding's code.
TEXTS = {
    "session": (
        "problem",
        "onnxruntime could not run this model",
        "{err}",
        "see the findings below for the cause; `compress bench` will fail the same way",
    ),
    "cpu_int8.int8": (
        "warning",
        "int8 without VNNI/AMX/dot-product instructions: rarely faster than fp32",
        "{isa}",
        "keep fp32 (or prune) on this CPU; if you quantize, use reduce_range=True "
        "(7-bit weights) to avoid U8S8 saturation on AVX2, and measure with `compress bench`",
    ),
    "cpu_int8.int8_dot": (
        "info",
        "this CPU has int8 dot-product instructions (VNNI/AMX/ARM dot)",
        "{isa}",
        "int8 kernels can beat fp32 here when Q/DQ pairs are fused; reduce_range is not "
        "needed with VNNI. Compare both with `compress bench`",
    ),
    "cpu_int8.fp32_dot": (
        "info",
        "fp32 model; int8 could help: the CPU has int8 dot-product instructions",
        "{isa}",
        "try static QDQ quantization and compare with `compress bench`",
    ),
    "cpu_int8.fp32": (
        "info",
        "fp32 model; this CPU lacks int8 dot-product instructions, so int8 rarely pays",
        "{isa}",
        "prefer pruning (fewer channels) over int8 on this CPU",
    ),
    "conv_integer": (
        "problem",
        "{n} ConvInteger nodes (dynamic quantization of convolutions)",
        "activations are re-quantized at run time before each conv and the int32 result is "
        "cast back to float: nothing fuses, and older onnxruntime builds have no CPU kernel "
        "for int8-weight ConvInteger at all. One run on a shared 2-core EPYC (onnxruntime "
        "1.32, ResNet-18 64x64, batch 8): 3.7x slower than fp32",
        "use static quantization (QDQ, calibrated on real data) for convolutional models; keep "
        "dynamic quantization for MatMul/Gemm (op_types_to_quantize=['MatMul', 'Gemm'])",
    ),
    "qdq": (
        "info",
        "QDQ-quantized graph",
        "{detail}",
        "run onnxruntime.quantization.quant_pre_process before quantize_static so that "
        "onnxruntime can fuse each DQ->op->Q into one int8 kernel",
    ),
    "qdq.fused": (  # the advice above would contradict the facts
        "info",
        "QDQ-quantized graph",
        "{detail}",
        "nothing to do: every DQ->op->Q fused into an int8 kernel (quant_pre_process "
        "before quantize_static, as `compress quantize` does, keeps it so)",
    ),
    "unfused_qdq": (
        "warning",
        "{title}",
        "each one converts a whole activation tensor between float and int8 at run time",
        "quantize the ops between them too (or exclude the float ops with "
        "nodes_to_exclude so no Q/DQ is inserted around them)",
    ),
    "fp32_islands": (
        "warning",
        "{n} compute nodes still run in fp32 inside a quantized graph",
        "after onnxruntime's optimizations: {shown}",
        "quantize these ops as well (check op_types_to_quantize), or accept them and "
        "make sure the float<->int8 conversions around them are few",
    ),
    "ep_assignment.ok": ("ok", "all {total} profiled nodes ran on {wanted}", "", ""),
    "ep_assignment": (
        "{severity}",
        "{moved} of {total} nodes did not run on {wanted}",
        "ran elsewhere: {ops}",
        "every switch between providers copies tensors; replace or remove those ops, or "
        "export with an opset whose versions of them the provider supports",
    ),
    "channels": (
        "{severity}",
        "{n} convolutions have channel counts that are not multiples of 8",
        "{shown}",
        "SIMD kernels work in blocks of 8 (AVX2) or 16 (AVX-512) channels, so odd widths "
        "leave lanes idle; when pruning, round channels to multiples of 8 (torch-pruning "
        "round_to=8)",
    ),
    "dynamic_shapes.static": ("ok", "static input shape {dims}", "", ""),
    "dynamic_shapes.batch": (
        "info",
        "dynamic batch dimension {dims}",
        "fine for onnxruntime CPU/CUDA; TensorRT builds an engine per shape profile",
        "export with --static (fixed batch) for the TensorRT runtime or a fixed-size server",
    ),
    "dynamic_shapes": (
        "warning",
        "dynamic non-batch dimensions {dims}",
        "unknown spatial sizes block shape-specialized fusions and memory planning",
        "export with a fixed --input-size",
    ),
    "fp16_on_cpu": (
        "warning",
        "fp16 weights ({n} tensors) on the CPU runtime",
        "onnxruntime's CPU provider has few fp16 kernels on x86: it inserts Cast nodes and "
        "computes in fp32, so the file is smaller but not faster",
        "use fp16 on a GPU (--runtime ort-cuda); on CPU keep fp32 or quantize to int8",
    ),
    "threads.over": (
        "warning",
        "{threads} threads on {cores} physical cores",
        "oversubscribed threads spin and preempt each other",
        "use --threads {cores} or fewer",
    ),
    "threads": ("info", "{threads} intra-op threads, {cores} cores", "{detail}", ""),
    "hotspots": (
        "info",
        "where the time goes (profiled, batch 1): {top}",
        "{ms:.2f} ms of kernel time per run",
        "shrink the layers behind the top op type first (pruning helps Conv/Gemm-bound models)",
    ),
}


def finding(key: str, **facts: Any) -> list[Finding]:
    """The finding `key` of TEXTS with `facts` filled in (a one-item list, as checks return)."""
    texts = (t.format(**facts) for t in TEXTS[key])
    return [Finding(key.split(".")[0], *texts)]


def _shown(names: list[str]) -> str:
    return ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")


def _check_session(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    err = d.session.get("error")
    return finding("session", err=err) if err else []


def _check_isa(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    isa = ", ".join(k for k, v in d.isa.items() if v) or "no SIMD flags detected"
    kind = ("int8" if d.quantized else "fp32") + ("_dot" if has_int8_dot_product() else "")
    return finding(f"cpu_int8.{kind}", isa=f"{d.cpu}: {isa}")


def _check_conv_integer(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    n = d.op_counts.get("ConvInteger", 0)
    return finding("conv_integer", n=n) if n else []


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
    fused = sum(opt.get(op, 0) for op in INT_COMPUTE)
    if opt:
        detail += (
            f"; after onnxruntime's fusion: {fused} int8 compute nodes, {inner} Q/DQ nodes "
            "left inside the graph"
        )
    done = opt and fused and not inner and not pairs
    out = finding("qdq.fused" if done else "qdq", detail=detail)
    if inner:
        title = f"{inner} Q/DQ nodes remain inside the graph after onnxruntime's fusion"
        out += finding("unfused_qdq", title=title)
    elif pairs:
        title = f"{pairs} DequantizeLinear->QuantizeLinear chains (requantization) in the file"
        out += finding("unfused_qdq", title=title)
    return out


def _dq_q_pairs(graph: Any) -> int:
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return sum(
        1
        for n in graph.node
        if n.op_type == "QuantizeLinear" and producer.get(n.input[0]) == "DequantizeLinear"
    )


def _check_fp32_islands(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    floats = d.session.get("float_compute") or [] if d.quantized else []
    return finding("fp32_islands", n=len(floats), shown=_shown(floats)) if floats else []


def _check_ep_assignment(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    per = d.session.get("node_providers") or {}
    if not per:
        return []
    wanted = ORT_PROVIDERS[d.runtime][0]
    total = sum(sum(ops.values()) for ops in per.values())
    moved = {op: n for p, ops in per.items() if p != wanted for op, n in ops.items()}
    if not moved:
        return finding("ep_assignment.ok", total=total, wanted=wanted)
    return finding(
        "ep_assignment",
        severity="problem" if wanted not in per else "warning",
        moved=sum(moved.values()),
        total=total,
        wanted=wanted,
        ops=", ".join(f"{op} x{n}" for op, n in moved.items()),
    )


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
    severity = "warning" if len(odd) > 1 else "info"
    return finding("channels", severity=severity, n=len(odd), shown=_shown(odd))


def _check_dynamic_shapes(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    dims = info.input_shape
    dynamic = [i for i, x in enumerate(dims) if not (isinstance(x, int) and x > 0)]
    key = ".static" if not dynamic else ".batch" if dynamic == [0] else ""
    return finding("dynamic_shapes" + key, dims=dims)


def _check_fp16_on_cpu(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    fp16 = sum(1 for t in graph.initializer if t.data_type == 10)  # TensorProto.FLOAT16
    return finding("fp16_on_cpu", n=fp16) if fp16 and d.runtime == "ort-cpu" else []


def _check_threads(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    cores = physical_cores()
    if d.threads > cores:
        return finding("threads.over", threads=d.threads, cores=cores)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    detail = f"load average {load:.2f}" + (" (busy: latency will be noisy)" if load > cores else "")
    return finding("threads", threads=d.threads, cores=cores, detail=detail)


def _check_hotspots(d: Diagnosis, graph: Any, info: Any) -> list[Finding]:
    times: dict[str, float] = d.session.get("time_by_op") or {}
    total = sum(times.values())
    if not total:
        return []
    top = sorted(times.items(), key=lambda kv: -kv[1])[:5]
    shares = ", ".join(f"{op} {100 * t / total:.0f} %" for op, t in top)
    return finding("hotspots", top=shares, ms=total / 1e3)


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
