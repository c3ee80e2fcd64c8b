"""Which (runtime, precision) pairs this machine can really run, and why not: `bf16` needs native
bf16 or a GPU (emulated is slower than fp32), `fp16` is a GPU precision, `int8` comes from int8
artifacts, never a run-time cast. Refusals are reason strings every report shows."""

from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
GPU_RUNTIMES = frozenset({"torch-cuda", "ort-cuda", "ort-trt", "openvino-gpu"})
# Runtimes that can lower an fp32 model to bf16 / fp16 themselves (autocast or a precision hint).
BF16_RUNTIMES = frozenset({"torch", "torch-cuda", "torch-compile", "openvino", "openvino-gpu"})
FP16_RUNTIMES = frozenset({"torch-cuda", "openvino-gpu"})
# Precisions of quantized ONNX artifacts (`compress quantize`): they run as they are, never a cast.
QUANTIZED = ("int8", "int4", "mixed")


def cpu_bf16(flags: frozenset[str] | None = None) -> str | None:
    """None when this CPU computes bf16 natively, else the reason it does not."""
    from compress.export.environment import has_native_bf16

    if has_native_bf16(flags):  # x86 AVX512-BF16 / AMX-BF16, ARM BF16
        return None
    return (
        "this CPU has no native bf16 instructions (no avx512_bf16, amx_bf16 or ARM bf16 in its "
        "flags): bf16 would be emulated, slower than fp32"
    )


def check_precision(name: str) -> str:
    """`name`, or UsageError when compress knows no such precision."""
    from compress.models.errors import UsageError

    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    return name


def parse_precisions(text: str | None) -> tuple[str, ...] | None:
    """`fp32,bf16` -> ('fp32', 'bf16'); None/'' -> None (each model at its own precision)."""
    names = [check_precision(p.strip().lower()) for p in (text or "").split(",") if p.strip()]
    return tuple(dict.fromkeys(names)) or None


def unavailable(
    runtime: str, precision: str, artifact: str = "fp32", flags: frozenset[str] | None = None
) -> str | None:
    """Why `runtime` cannot run an `artifact`-precision model at `precision` here (None: it can)."""
    gpu = runtime in GPU_RUNTIMES
    if artifact in (*QUANTIZED, "fp16"):
        if precision != artifact:
            return f"an {artifact} artifact runs as {artifact}, not {precision}"
        if artifact in QUANTIZED and runtime.startswith("torch"):
            return f"{artifact} artifacts are ONNX (QDQ): PyTorch runtimes do not read them"
        return None
    if precision == "fp32":
        return None
    if precision == "int8":
        return "int8 is the precision of int8 artifacts (`compress quantize`), not a run-time cast"
    if precision == "fp16":
        if runtime not in FP16_RUNTIMES:
            why = "a GPU precision" if not gpu else "not a cast this runtime makes"
            return f"fp16 on {runtime}: {why}; export an fp16 artifact or use a GPU runtime"
        return None
    # bf16
    if runtime not in BF16_RUNTIMES:
        return f"{runtime} has no bf16 execution (onnxruntime runs bf16 only as casts)"
    return None if gpu else cpu_bf16(flags)


def refuse(runtime: str, precision: str, artifact: str = "fp32") -> None:
    """Raise UnsupportedError (exit 4) with the reason when the pair cannot run here."""
    from compress.models.errors import UnsupportedError

    if not (precision == artifact and artifact in QUANTIZED):
        check_precision(precision)
    if why := unavailable(runtime, precision, artifact):
        raise UnsupportedError(f"--precision {precision} on {runtime} refused: {why}")
