"""Multi-process training under `torchrun` (torch.distributed): joining and leaving the group.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT and :func:`setup` joins
the group from them (gloo on CPU, NCCL on CUDA, rank on GPU LOCAL_RANK); without them everything
here is a cheap no-op. Collectives time out after COMPRESS_DIST_TIMEOUT seconds (default 1800),
so a dead or hung rank is a clear error, not an endless wait.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from compress.models.errors import ResourceError, UnsupportedError, UsageError
from compress.models.jsontypes import JsonObject

log = logging.getLogger(__name__)

BACKEND_ENV = "COMPRESS_DIST_BACKEND"
TIMEOUT_ENV = "COMPRESS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, the backend (None: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.backend is not None and self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def record(self) -> JsonObject:
        """What a card says about how the model was trained (its JSON)."""
        return {"world_size": self.world_size, "backend": self.backend or "none"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from None


def launched() -> bool:
    """True when started by torchrun (or another launcher setting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def info() -> DistInfo:
    """The current process group, or what the environment announces before it is joined."""
    local = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))
    return DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), local)


def rank() -> int:
    return info().rank


def world_size() -> int:
    return info().world_size


def is_main() -> bool:
    """Rank 0 writes artifacts and checkpoints and prints progress."""
    return info().rank == 0


def timeout_s() -> float:
    """Seconds a collective may wait for the other ranks (COMPRESS_DIST_TIMEOUT)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {raw!r}")
    return value


def choose_backend(device: torch.device) -> str:
    """COMPRESS_DIST_BACKEND if set, else nccl for CUDA and gloo for CPU; checked against
    what this build and device can really do."""
    wanted = os.environ.get(BACKEND_ENV, "").strip().lower()
    backend = wanted or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in BACKENDS:
        raise UsageError(
            f"{BACKEND_ENV}={wanted!r}: unknown backend", hint=f"use one of {', '.join(BACKENDS)}"
        )
    if backend == "nccl" and device.type != "cuda":
        raise UnsupportedError(
            f"the nccl backend needs CUDA GPUs, but this run trains on {device.type}",
            hint=f"unset {BACKEND_ENV} (gloo is used on CPU), or train with --device cuda",
        )
    available = dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()
    if not available:
        raise UnsupportedError(
            f"this PyTorch build ({torch.__version__}) has no {backend} backend",
            hint="gloo works on CPU and GPU; nccl needs a CUDA build of PyTorch",
        )
    return backend


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UnsupportedError(
            f"local rank {local_rank} needs GPU {local_rank}, but {count} GPU(s) are visible",
            hint=f"use --nproc_per_node {count} or fewer (one process per GPU), or --device cpu",
        )
    if device.index is not None and device.index != local_rank:
        log.warning("--device %s ignored under torchrun: rank uses cuda:%d", device, local_rank)
    return torch.device("cuda", local_rank)


def setup(device: torch.device | str = "cpu") -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group (idempotent); return it with this rank's device (GPU
    LOCAL_RANK on CUDA). Single-process runs get (DistInfo(), device) back untouched."""
    dev = torch.device(device)
    if not launched():
        return DistInfo(), dev
    cur = info()
    if cur.world_size <= 1:
        if os.environ.get(BACKEND_ENV):
            choose_backend(dev)  # an explicit choice is checked even for one process
        return DistInfo(cur.rank, 1, cur.local_rank), dev
    backend = choose_backend(dev)
    dev = _rank_device(dev, cur.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        return cur, dev
    seconds = timeout_s()
    try:
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=seconds))
    except (RuntimeError, ValueError) as e:
        raise ResourceError(
            f"rank {cur.rank} could not join the {backend} process group: {e}",
            hint="check MASTER_ADDR/MASTER_PORT (or --rdzv-endpoint) and that every node can "
            "reach it",
        ) from e
    atexit.register(shutdown)
    now = info()
    if now.rank != 0:  # N copies of every progress line help nobody; warnings still show
        for name in ("compress", "models", "export"):
            logging.getLogger(name).setLevel(logging.WARNING)
    log.info(
        "rank %d/%d joined the %s process group (timeout %.0f s)",
        now.rank,
        now.world_size,
        backend,
        seconds,
    )
    return now, dev


def shutdown() -> None:
    """Leave the process group (registered at exit; safe to call twice)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # a DDP reducer (in a reference cycle) outliving the group aborts
        # leave together: tearing gloo down under a connected peer aborts it ("terminate called")
        with contextlib.suppress(RuntimeError):
            dist.barrier()
        dist.destroy_process_group()


def group_active() -> bool:
    """True inside a joined process group of more than one rank (collectives do something)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when distributed, else `model` itself; wrap again
    after layers change shape (pruning): DDP's buckets are sized for the parameters it saw."""
    if not group_active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=device.index if ids else None)
