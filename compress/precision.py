"""Mixed-precision policy: which autocast dtype a device really benefits from.

`auto` picks fp16 (with a gradient scaler) on CUDA, bf16 on CUDA devices that support it when
asked, and on CPU bf16 only where the CPU has native bf16 instructions (AVX-512 BF16 / AMX);
elsewhere it stays fp32, because emulated bf16 is far slower (0.2 GFLOP/s measured on an
AVX2-only EPYC).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from models.errors import UnsupportedError, UsageError

log = logging.getLogger(__name__)
AMP_MODES = ("off", "fp16", "bf16", "auto")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (Linux), empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


@dataclass(frozen=True)
class AmpPolicy:
    """What training will do: autocast dtype (None = fp32), whether to scale the loss, and why."""

    requested: str
    dtype: torch.dtype | None
    scaler: bool
    reason: str

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_amp(mode: str, device: torch.device) -> AmpPolicy:
    """Turn `--amp` into a policy for `device`; errors for modes the device cannot do."""
    if mode not in AMP_MODES:
        raise UsageError(f"--amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    if mode == "off":
        return AmpPolicy(mode, None, False, "mixed precision off")
    if device.type == "cuda":
        if mode == "bf16" and not torch.cuda.is_bf16_supported():
            raise UnsupportedError("--amp bf16: this GPU does not support bf16")
        if mode == "bf16":
            return AmpPolicy(mode, torch.bfloat16, False, "bf16 autocast on a bf16-capable GPU")
        return AmpPolicy(mode, torch.float16, True, "fp16 autocast with gradient scaling on CUDA")
    if mode == "fp16":
        raise UnsupportedError("--amp fp16 needs a CUDA GPU; on CPU use --amp auto or off")
    native = cpu_has_native_bf16()
    if mode == "auto":
        if native:
            return AmpPolicy(mode, torch.bfloat16, False, "CPU has native bf16 (AVX-512 BF16/AMX)")
        return AmpPolicy(
            mode,
            None,
            False,
            "fp32: this CPU has no native bf16 (no AVX-512 BF16/AMX), where bf16 "
            "autocast is emulated and much slower",
        )
    if not native:
        log.warning(
            "--amp bf16 on a CPU without native bf16 instructions: expect training to be "
            "many times SLOWER than fp32 (emulated bf16); use --amp auto to avoid this"
        )
    return AmpPolicy(
        mode,
        torch.bfloat16,
        False,
        "bf16 autocast on CPU" + ("" if native else " (emulated: slow)"),
    )


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; an explicit `cuda` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UnsupportedError(
            "--device cuda requested but no CUDA GPU is available",
            hint="use --device cpu (or auto)",
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)
