"""What machine a number was measured on (CPU model and ISA, threads, library versions, GPU): int8
kernels need VNNI/AMX (x86) or dot-product (ARM) to beat fp32, so every benchmark records it."""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from compress.models.jsontypes import JsonObject

# The one CPU-feature table: flag names as /proc/cpuinfo spells them, grouped by what they mean
# for inference. compress.quantization.isa, the doctor and the precision rules all read it.
ISA_GROUPS: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "fma": ("fma",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "amx": ("amx_tile", "amx_int8", "amx_bf16"),  # any AMX unit
    "amx_int8": ("amx_int8",),
    "amx_bf16": ("amx_bf16",),
    "neon": ("neon", "asimd"),
    "arm_dotprod": ("asimddp",),
    "arm_i8mm": ("i8mm",),
    "arm_bf16": ("bf16",),
}
# Groups that sum int8 products into 32 bits without saturation: int8 GEMM's fast path.
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "arm_dotprod", "arm_i8mm")
# Groups that compute bf16 natively (emulated bf16 is slower than fp32).
NATIVE_BF16 = ("avx512_bf16", "amx_bf16", "arm_bf16")
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "numpy", "compress")


def cpu_arch() -> str:
    """This machine's architecture: x86_64, arm64, or what platform.machine() says."""
    m = platform.machine().lower()
    if m in ("x86_64", "amd64"):
        return "x86_64"
    if m in ("aarch64", "arm64"):
        return "arm64"
    return m or "unknown"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of the first CPU in a /proc/cpuinfo text ('' and {} if absent);
    x86 lists `flags`, ARM `Features`."""
    name, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return name, flags


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(CPU model name, feature flags) from /proc/cpuinfo; best effort elsewhere."""
    name, flags = "", frozenset[str]()
    with contextlib.suppress(OSError):
        name, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    name = name or platform.processor() or platform.machine()
    if cpu_arch() == "arm64" and not flags:
        flags = frozenset({"neon"})  # every 64-bit ARM core has NEON
    return name, flags


def isa_flags(flags: frozenset[str] | None = None) -> dict[str, bool]:
    """Which inference-relevant instruction sets this CPU (or these `flags`) has."""
    flags = cpu_info()[1] if flags is None else flags
    return {group: any(f in flags for f in names) for group, names in ISA_GROUPS.items()}


def has_int8_dot_product(flags: frozenset[str] | None = None) -> bool:
    """True where int8 GEMM has a fast path (VNNI, AMX-INT8, ARM dot product or i8mm)."""
    return any(isa_flags(flags)[k] for k in INT8_DOT_PRODUCT)


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16, AMX-BF16, ARM BF16)."""
    return any(isa_flags(flags)[k] for k in NATIVE_BF16)


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def gpu_info() -> JsonObject | None:
    """The first CUDA device as torch sees it: name, memory, device count, CUDA version."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    memory_gb = round(props.total_memory / 2**30, 1)
    count, cuda = torch.cuda.device_count(), torch.version.cuda
    return {"name": props.name, "memory_gb": memory_gb, "count": count, "cuda": cuda}


def capture_environment(threads: int | None = None) -> JsonObject:
    """Everything a latency number depends on, as the JSON a benchmark report writes."""
    import onnxruntime as ort

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    libs = {"python": platform.python_version()}
    for pkg in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            libs[pkg] = metadata.version(pkg)
    return {
        "cpu": cpu_info()[0],
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "threads": threads,
        "isa": isa_flags(),
        "int8_dot_product": has_int8_dot_product(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "libraries": libs,
        "ort_providers": list(ort.get_available_providers()),
        "gpu": gpu_info(),
    }


def busy_note(env: dict[str, Any]) -> str | None:
    """A warning when other processes shared the CPU while measuring: the 1-minute load
    average, less the benchmark's own threads, of half a core or more."""
    load, cores, threads = env.get("load_average"), env.get("logical_cores"), env.get("threads")
    if not load or not cores or env.get("gpu"):
        return None
    others = load[0] - (threads or 1)  # runnable benchmark threads count in the load too
    if others < 0.5:
        return None
    return (
        f"The CPU was busy while measuring (load average {load[0]:.2f} on {cores} cores, "
        f"{threads} benchmark threads): absolute latencies are inflated and noisy; compare "
        "speed-ups measured in one run (bench rounds), or rerun on an idle machine."
    )
