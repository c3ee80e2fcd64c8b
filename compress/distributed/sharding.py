"""Per-rank data shards under torchrun: each rank trains on its own share of every epoch.

The training split is shuffled with one seed per epoch and padded so every rank runs the same
number of steps; evaluation splits are strided so every sample counts exactly once overall.
Outside a process group the helpers return None and the loaders keep their usual samplers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from compress.distributed.group import group_active, rank
from compress.models.errors import UsageError


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
    if not group_active():
        return None
    s = ShardSampler(n, dist.get_rank(), dist.get_world_size(), shuffle=True, seed=seed)
    s.set_epoch(epoch)
    return s


def eval_sampler(n: int) -> ShardSampler | None:
    """This rank's share of an evaluation split (every sample exactly once overall)."""
    if not group_active():
        return None
    return ShardSampler(n, dist.get_rank(), dist.get_world_size(), shuffle=False, pad=False)


def rank_seed(seed: int) -> int:
    """A different, reproducible seed per rank for dropout and augmentation noise."""
    return seed + 1_000_003 * rank() if group_active() else seed
