"""Per-rank data shards under torchrun: each rank trains on its own share of every epoch.

The training split is shuffled with one seed per epoch and padded so every rank runs the same
number of steps; evaluation splits are strided so every sample counts exactly once overall.
Outside a process group the helpers return None and the loaders keep their usual samplers.
"""

from __future__ import annotations

import torch.distributed as dist
from torch.utils.data import DistributedSampler

from compress.distributed.group import group_active, rank
from compress.models.errors import UsageError


class ShardSampler(DistributedSampler[int]):
    """One rank's shard of range(n): torch's DistributedSampler (seeded shuffle per epoch via
    set_epoch, padded so every rank runs the same number of steps) or, with `pad=False`, a
    strided split for evaluation where every sample counts exactly once."""

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
        super().__init__(range(n), world, rank, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
        if not pad:  # nothing to pad: the strided indices of the (shuffled) order
            self.total_size = n
            self.num_samples = len(range(rank, n, world))


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
