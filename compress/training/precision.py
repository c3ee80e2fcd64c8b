"""Mixed-precision policy: which autocast dtype a device really benefits from.

`auto`: fp16 with a gradient scaler on CUDA; on CPU bf16 only with native bf16 (AVX-512 BF16 /
AMX; emulated bf16 ran at 0.2 GFLOP/s on an AVX2 EPYC), not below CPU_BF16_MIN_MACS per sample
(LeNet-5 stepped 0.92-1.27x under bf16, ResNet-50 1.2-1.6x: benchmarks/results/distill-amp.md)
and not with OMP_WAIT_POLICY=PASSIVE and >1 thread (7-10x slower); else fp32.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from compress.export.environment import cpu_info, isa_flags
from compress.models.errors import UnsupportedError, UsageError
from compress.models.zoo.spec import eval_mode

log = logging.getLogger(__name__)
AMP_MODES = ("off", "fp16", "bf16", "auto")
CPU_BF16_MIN_MACS = 5_000_000  # LeNet-5: 0.42 M (no bf16 gain); ResNet-18/50 at 28x28: 33/78 M


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """CPU feature flags as compress.export.environment reads them (/proc/cpuinfo; empty elsewhere)."""
    return cpu_info()[1]


def cpu_has_native_bf16() -> bool:
    """Native x86 bf16 for training autocast (AVX512-BF16 or AMX-BF16, in the one table)."""
    isa = isa_flags(cpu_flags())
    return isa["avx512_bf16"] or isa["amx_bf16"]


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


def forward_macs(model: nn.Module) -> int | None:
    """Multiply-accumulates of one sample's forward (torch's FlopCounterMode on a probe, half
    its flops); None when the model carries no spec to build the probe from or cannot run it."""
    shape = getattr(getattr(model, "spec", None), "input_shape", None)
    if shape is None:
        return None
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as flops, torch.no_grad(), eval_mode(model):
            model(torch.zeros(1, *shape))
    except Exception:  # a model that can't run a zero probe on CPU: no size-based decision
        return None
    return int(flops.get_total_flops()) // 2


def resolve_amp(mode: str, device: torch.device, model: nn.Module | None = None) -> AmpPolicy:
    """Turn `--amp` into a policy for `device` (and, for `auto` on CPU, for `model`'s size);
    errors for modes the device cannot do."""
    if mode not in AMP_MODES:
        raise UsageError(f"--amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    if mode == "off":
        return _fp32(mode, "mixed precision off")
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
        if native and _passive_threads():
            return _fp32(
                mode,
                "fp32: with OMP_WAIT_POLICY=PASSIVE and several threads, bf16 autocast ran "
                "7-10x slower than fp32 here (its many small parallel casts)",
            )
        if native:
            macs = forward_macs(model) if model is not None else None
            if macs is not None and macs < CPU_BF16_MIN_MACS:
                return _fp32(
                    mode,
                    f"fp32: the model is too small ({macs / 1e6:.2f} M MACs/sample) for bf16 "
                    "autocast to pay on CPU (its casts cost what bf16 saves)",
                )
            return AmpPolicy(mode, torch.bfloat16, False, "CPU has native bf16 (AVX-512 BF16/AMX)")
        return _fp32(
            mode,
            "fp32: this CPU has no native bf16 (no AVX-512 BF16/AMX), where bf16 "
            "autocast is emulated and much slower",
        )
    if not native:
        log.warning(
            "--amp bf16 on a CPU without native bf16 instructions: expect training to be "
            "many times SLOWER than fp32 (emulated bf16); use --amp auto to avoid this"
        )
    elif _passive_threads():
        log.warning(
            "--amp bf16 with OMP_WAIT_POLICY=PASSIVE and %d threads: bf16 autocast measured "
            "7-10x SLOWER than fp32 in this setting; use one thread or --amp auto",
            torch.get_num_threads(),
        )
    why = "bf16 autocast on CPU" + ("" if native else " (emulated: slow)")
    return AmpPolicy(mode, torch.bfloat16, False, why)


def _fp32(mode: str, reason: str) -> AmpPolicy:
    return AmpPolicy(mode, None, False, reason)


def _passive_threads() -> bool:
    """OpenMP told to sleep between parallel regions, with more than one thread."""
    passive = os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive"
    return passive and torch.get_num_threads() > 1


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
