"""Multi-process training under `torchrun` (torch.distributed): setup, sharding, collectives.

Every training stage runs unchanged under `torchrun --nproc_per_node N -m compress ...`:
torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, and :func:`setup`
joins the process group from them (gloo on CPU, NCCL on CUDA, each rank on GPU LOCAL_RANK).
Without those variables (or with WORLD_SIZE=1) everything here is a cheap no-op, so single
process code paths stay exactly as they were.

Collectives time out after COMPRESS_DIST_TIMEOUT seconds (default 1800), so when one rank dies
or hangs the others fail with a clear error instead of waiting forever; torchrun also stops the
surviving workers of a node as soon as one of them exits with an error.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from compress.evaluate import EvalResult
from models.errors import CompressError, ResourceError, UnsupportedError, UsageError

log = logging.getLogger(__name__)

BACKEND_ENV = "COMPRESS_DIST_BACKEND"
TIMEOUT_ENV = "COMPRESS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
BACKENDS = ("gloo", "nccl")
T = TypeVar("T")


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

    def record(self) -> dict[str, Any]:
        """What a card says about how the model was trained."""
        return {"world_size": self.world_size, "backend": self.backend or "none"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from None


def launched() -> bool:
    """True when started by torchrun (or another launcher setting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def info() -> DistInfo:
    """The current process group, or what the environment announces before it is joined."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(),
            dist.get_world_size(),
            _env_int("LOCAL_RANK", 0),
            str(dist.get_backend()),
        )
    return DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


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
    """Join the torchrun process group (idempotent) and return it with this rank's device.

    Single-process runs get (DistInfo(), device) back untouched. On CUDA every rank uses GPU
    LOCAL_RANK. A backend the device cannot use is an UnsupportedError raised on every rank.
    """
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
    if dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return cur, dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
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
        # Leave together: a rank tearing gloo down while a peer is still connected can abort
        # the peer ("terminate called without an active exception").
        with contextlib.suppress(RuntimeError):
            dist.barrier()
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- collectives


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device() -> torch.device:
    """Where collective tensors must live: the current GPU for NCCL, else the CPU."""
    if str(dist.get_backend()) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not _active():
        return
    with collective_errors():
        if str(dist.get_backend()) == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sums(values: Iterable[float]) -> list[float]:
    """Element-wise sums over all ranks (float64), e.g. loss sums and sample counts."""
    vals = list(values)
    if not _active():
        return vals
    t = torch.tensor(vals, dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def all_reduce_(tensor: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """Sum (or average) a tensor over all ranks, in place; returned for chaining."""
    if not _active():
        return tensor
    work = tensor if tensor.device == _device() else tensor.to(_device())
    dist.all_reduce(work)
    if mean:
        work /= dist.get_world_size()
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def all_reduce_eval(ev: EvalResult) -> EvalResult:
    """Merge every rank's evaluation of its share into the result over the whole split."""
    if not _active():
        return ev
    confusion = torch.tensor(ev.confusion, dtype=torch.float64)
    n = ev.samples
    loss_sum, top5_hits = (ev.loss * n if n else 0.0), ev.top5 * n
    all_reduce_(confusion)
    n_all, loss_all, top5_all = all_reduce_sums([n, loss_sum, top5_hits])
    conf = confusion.round().long()
    total = max(n_all, 1.0)
    per_class = (conf.diag().double() / conf.sum(1).clamp(min=1).double()).tolist()
    return EvalResult(
        top1=float(conf.diag().sum()) / total,
        top5=round(top5_all) / total,
        loss=loss_all / total if n_all else float("nan"),
        samples=int(n_all),
        per_class=per_class,
        confusion=conf.tolist(),
    )


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average .grad over ranks for parameters DDP does not own (e.g. distillation adapters)."""
    if not _active():
        return
    for p in params:
        if p.grad is not None:
            all_reduce_(p.grad, mean=True)


def reduce_importance_gradients(model: nn.Module, importance: Any) -> None:
    """Gradient-based pruning importance from every rank's data, before one decision: Taylor's
    gradients are averaged over ranks; Hessian's accumulated squared gradients and sample counts
    (torch-pruning's `_accu_grad` / `_counter`) are summed, giving the mean over all samples."""
    if not _active():
        return
    accu = getattr(importance, "_accu_grad", None)
    if not accu:
        average_gradients(model.parameters())
        return
    for g in accu.values():
        all_reduce_(g)
    counter = importance._counter
    counts = all_reduce_sums(float(counter[p]) for p in accu)
    for p, c in zip(accu, counts, strict=True):
        counter[p] = round(c)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s object on every rank (pickled; for small things: states, decisions)."""
    if not _active():
        return obj
    box = [obj]
    with collective_errors():
        dist.broadcast_object_list(
            box, src=src, device=_device() if _device().type == "cuda" else None
        )
    return box[0]  # type: ignore[return-value]


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only (measurements, writing files); every rank gets its result, or
    raises the same CompressError it raised, so no rank is left waiting for a dead one."""
    if not _active():
        return fn()
    if not is_main():
        got: tuple[str, Any] = broadcast_object(("", None))
        if got[0] == "error":
            raise got[1]
        return got[1]  # type: ignore[no-any-return]
    try:
        out = fn()
    except CompressError as e:
        broadcast_object(("error", e))
        raise
    broadcast_object(("ok", out))
    return out


def gather_objects(obj: T) -> list[T]:
    """Every rank's object, in rank order, on every rank."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    with collective_errors():
        dist.all_gather_object(out, obj)
    return out


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite `tensor` with rank `src`'s values, in place."""
    if not _active():
        return tensor
    work = tensor if tensor.device == _device() else tensor.to(_device())
    dist.broadcast(work, src=src)
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when distributed, else `model` itself.

    Call again whenever layers change shape (pruning): a DDP wrapper holds buckets sized for
    the parameters it was built with."""
    if not _active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=device.index if ids else None)


# ----------------------------------------------------------------------------- data


class ShardSampler(Sampler[int]):
    """Indices of one rank's shard, like torch's DistributedSampler (seeded shuffle per epoch
    via set_epoch, padded so every rank runs the same number of steps) or, with
    `pad=False`, a strided split for evaluation where every sample counts exactly once."""

    def __init__(
        self,
        n: int,
        rank: int,
        world: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pad: bool = True,
    ) -> None:
        if not 0 <= rank < world:
            raise UsageError(f"rank {rank} outside world size {world}")
        self.n, self.rank, self.world = n, rank, world
        self.shuffle, self.seed, self.pad = shuffle, seed, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.pad and self.n:
            total = -(-self.n // self.world) * self.world
            order += (order * (total // self.n + 1))[: total - self.n]
        return iter(order[self.rank :: self.world])

    def __len__(self) -> int:
        if self.pad:
            return -(-self.n // self.world)
        return len(range(self.rank, self.n, self.world))


def train_sampler(n: int, seed: int, epoch: int) -> ShardSampler | None:
    """This rank's shuffled shard of a training set for `epoch`; None when not distributed."""
    if not _active():
        return None
    s = ShardSampler(n, dist.get_rank(), dist.get_world_size(), shuffle=True, seed=seed)
    s.set_epoch(epoch)
    return s


def eval_sampler(n: int) -> ShardSampler | None:
    """This rank's share of an evaluation split (every sample exactly once overall)."""
    if not _active():
        return None
    return ShardSampler(n, dist.get_rank(), dist.get_world_size(), shuffle=False, pad=False)


def rank_seed(seed: int) -> int:
    """A different, reproducible seed per rank for dropout and augmentation noise."""
    return seed + 1_000_003 * rank() if _active() else seed


# ----------------------------------------------------------------------------- checks

_PEER_FAILURE = ("timed out", "timeout", "closed by peer", "reset by peer", "broken pipe")


@contextlib.contextmanager
def collective_errors() -> Iterator[None]:
    """Turn 'another rank died or hangs' (a collective timing out or its connection closing)
    into one clear ResourceError instead of a backend stack trace."""
    try:
        yield
    except RuntimeError as e:
        text = str(e).lower()
        peer = isinstance(e, getattr(dist, "DistError", ())) or any(
            w in text for w in _PEER_FAILURE
        )
        if not (_active() and peer):
            raise
        first = str(e).strip().splitlines()[0][:200]
        raise ResourceError(
            f"rank {rank()}: another rank stopped responding ({first})",
            hint="look for the first failing rank in the torchrun output; if ranks legitimately "
            f"wait longer than {timeout_s():.0f} s for each other, raise {TIMEOUT_ENV}",
        ) from e


def state_digest(model: nn.Module) -> str:
    """SHA-256 over names, shapes, dtypes and bytes of the state dict (rank comparisons)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def consistency(model: nn.Module) -> dict[str, Any]:
    """Compare every rank's weights (a collective): the card's proof that DDP kept them equal."""
    digests = gather_objects(state_digest(model))
    same = len(set(digests)) == 1
    if not same:
        log.error("ranks ended with different weights: %s", digests)
    return {"weights_identical_across_ranks": same, "rank_digests": digests}
