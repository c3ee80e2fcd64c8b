"""Collectives for training under torchrun: reductions, broadcasts, rank-0-only work, checks.

Each is a no-op (returning its input) outside a group of more than one rank, so training code
calls them unconditionally; a failed peer rank surfaces as one ResourceError (collective_errors).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from compress.distributed.group import TIMEOUT_ENV, group_active, is_main, rank, timeout_s
from compress.models.errors import CompressError, ResourceError
from compress.models.jsontypes import JsonObject

log = logging.getLogger(__name__)

T = TypeVar("T")
_PEER = ("timed out", "timeout", "closed by peer", "reset by peer", "broken pipe")


def _device() -> torch.device:
    """Where collective tensors must live: the current GPU for NCCL, else the CPU."""
    if str(dist.get_backend()) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not group_active():
        return
    nccl = str(dist.get_backend()) == "nccl"
    with collective_errors():
        dist.barrier(device_ids=[torch.cuda.current_device()] if nccl else None)


def all_reduce_sums(values: Iterable[float]) -> list[float]:
    """Element-wise sums over all ranks (float64), e.g. loss sums and sample counts."""
    return all_reduce_(torch.tensor(list(values), dtype=torch.float64)).tolist()  # type: ignore[no-any-return]


def all_reduce_(tensor: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """Sum (or average) a tensor over all ranks, in place; returned for chaining."""
    return _in_place(tensor, dist.all_reduce, mean)


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite `tensor` with rank `src`'s values, in place."""
    return _in_place(tensor, lambda t: dist.broadcast(t, src=src))


def _in_place(tensor: torch.Tensor, op: Callable[..., Any], mean: bool = False) -> Any:
    """Run `op` on `tensor` where the backend wants it (the GPU for NCCL), write the result back."""
    if not group_active():
        return tensor
    work = tensor if tensor.device == _device() else tensor.to(_device())
    op(work)
    if mean:
        work /= dist.get_world_size()
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average .grad over ranks for parameters DDP does not own (e.g. distillation adapters)."""
    for p in params:
        if p.grad is not None:
            all_reduce_(p.grad, mean=True)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s object on every rank (pickled; for small things: states, decisions)."""
    if not group_active():
        return obj
    box = [obj]
    with collective_errors():
        dist.broadcast_object_list(box, src=src, device=_device())
    return box[0]  # type: ignore[return-value]


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only (measurements, writing files); every rank gets its result, or
    raises the same CompressError it raised, so no rank is left waiting for a dead one."""
    if not group_active():
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
    if not group_active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    with collective_errors():
        dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def collective_errors() -> Iterator[None]:
    """Turn 'another rank died or hangs' (a collective timing out or its connection closing)
    into one clear ResourceError instead of a backend stack trace."""
    try:
        yield
    except RuntimeError as e:
        said = str(e).lower()
        peer = isinstance(e, getattr(dist, "DistError", ())) or any(w in said for w in _PEER)
        if not (group_active() and peer):
            raise
        first = str(e).strip().splitlines()[0][:200]
        raise ResourceError(
            f"rank {rank()}: another rank stopped responding ({first})",
            hint="look for the first failing rank in the torchrun output; if ranks legitimately "
            f"wait longer than {timeout_s():.0f} s for each other, raise {TIMEOUT_ENV}",
        ) from e


def state_digest(obj: Any, h: Any = None) -> str:
    """SHA-256 over keys, tensors (dtype, shape, bytes) and numbers in a fixed order; a module:
    its state dict. Compares ranks' weights; checks checkpoints (torch files have no checksum)."""
    h = h or hashlib.sha256()
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(f"<{k}>".encode())
            state_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            state_digest(x, h)
    else:
        h.update(repr(obj).encode())
    return str(h.hexdigest())


@dataclass(frozen=True)
class Consistency:
    """Every rank's weight digest, and whether they all agree."""

    weights_identical_across_ranks: bool
    rank_digests: list[str]

    def to_dict(self) -> JsonObject:
        return asdict(self)


def consistency(model: nn.Module) -> Consistency:
    """Compare every rank's weights (a collective): the card's proof that DDP kept them equal."""
    digests = gather_objects(state_digest(model))
    same = len(set(digests)) == 1
    if not same:
        log.error("ranks ended with different weights: %s", digests)
    return Consistency(same, digests)
