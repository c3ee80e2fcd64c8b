"""The frame every verb that writes an artifact runs in: output lock (taken first), out-dir
check, ranks, rank-0 atomic save, barrier. One place, so no stage forgets a step.

A collective frame (default: every torchrun rank runs the stage) writes on rank 0 only, gives
the other ranks a scratch directory, and ends with a barrier so `out` exists on every rank's
return; `collective=False` is for a stage one process runs alone: it waits for nobody.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compress.distributed import collectives
from compress.distributed import group as ddp
from compress.models.artifacts.artifact import Card, atomic_dir, check_out_dir, save_model
from compress.models.disk.outlock import output_lock


@dataclass
class StageFrame:
    """Where a stage writes, and whether this process is the one that writes it."""

    out: Path
    overwrite: bool
    collective: bool = True

    @property
    def writes(self) -> bool:
        """Whether this process writes `out` (rank 0 of a collective stage, or a lone one)."""
        return not self.collective or ddp.is_main()

    def join(self, device: torch.device | str) -> tuple[ddp.DistInfo, torch.device]:
        """Join the torchrun process group on `device` (a no-op in a single process)."""
        return ddp.setup(device)

    def save_model(self, model: nn.Module, card: Card) -> None:
        """Record how ranks trained it (a collective), then write the PyTorch artifact."""
        dist = ddp.info()
        if dist.active:
            card.distributed = {**dist.record(), **collectives.consistency(model).to_dict()}
        if self.writes:
            save_model(model, self.out, card, overwrite=self.overwrite)

    @contextlib.contextmanager
    def directory(self) -> Iterator[Path]:
        """`out`'s atomic temporary where this process writes (renamed onto `out` on success),
        else a scratch folder, dropped."""
        if self.writes:
            with atomic_dir(self.out, self.overwrite) as tmp:
                yield tmp
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.out.name}.rank-"
        with tempfile.TemporaryDirectory(prefix=prefix, dir=self.out.parent) as tmp:
            yield Path(tmp)


@contextlib.contextmanager
def stage_output(
    out: str | Path, overwrite: bool, *, check: bool = True, collective: bool = True
) -> Iterator[StageFrame]:
    """Lock `out`, refuse an existing non-empty `out` unless `overwrite` (skipped with
    `check=False`: a resumed run continues its own output), run the body; a collective frame
    ends with a barrier so every rank returns after rank 0 wrote."""
    with output_lock(out):
        if check:
            check_out_dir(out, overwrite)
        yield StageFrame(Path(out), overwrite, collective)
        if collective:
            collectives.barrier()  # the artifact exists on every rank's return
