"""Per-epoch training checkpoints: what `fit` writes after each epoch and `--resume` reads.

Plain tensors and numbers only (`weights_only=True`), with the history and every rank's RNG
state, so a resumed run sees the batches and noise an uninterrupted one would. Rank 0 writes it
atomically (a kill mid-save keeps the last one; a full disk is DiskFullError) and, on resume,
reads and broadcasts it (nodes need not share a file system); damage is refused in one line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO, Any, cast

import torch

from compress.distributed import collectives
from compress.distributed import group as ddp
from compress.models.disk.durable import atomic_file
from compress.models.errors import InvalidInputError, UsageError
from compress.models.jsontypes import JsonObject
from compress.training.config import FitResult, TrainConfig

log = logging.getLogger(__name__)


def _ckpt_path(cfg: TrainConfig) -> Path | None:
    return Path(cfg.checkpoint_dir) / "last.pt" if cfg.checkpoint_dir else None


class _Writer:
    """The file torch.save writes through, keeping the OSError that torch's zip writer turns
    into a bare RuntimeError ("unexpected pos"), so a full disk is reported as one."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return int(self.f.write(data))
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Plain tensors and numbers only (loadable with weights_only=True), with a content
    digest; atomic and fsynced."""
    state = {**state, "sha256": collectives.state_digest(state)}
    needed = sum(t.numel() * t.element_size() for t in _tensors(state))
    with atomic_file(path, needed=needed) as tmp, open(tmp, "wb") as f:
        writer = _Writer(f)
        try:
            torch.save(state, cast(IO[bytes], writer))  # write() is all torch uses
        except RuntimeError as e:
            if writer.error is not None:
                raise writer.error from e
            raise


def load_checkpoint(path: Path) -> JsonObject:
    """The state `save_checkpoint` wrote; a truncated or corrupted file is InvalidInputError."""
    why, cause = None, None
    try:
        state: JsonObject = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        said = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:120]
        why, cause = f"truncated or corrupted: {said}", e
    else:
        if not isinstance(state, dict) or "epoch" not in state or "model" not in state:
            why = "not a compress training checkpoint"
        elif "sha256" in state and collectives.state_digest(
            {k: v for k, v in state.items() if k != "sha256"}
        ) != state.pop("sha256"):
            why = "its content does not match its checksum: flipped bits or an edit"
    if why:
        raise InvalidInputError(
            f"checkpoint {path} is damaged ({why})",
            hint=f"delete {path} to start the run over, or run without --resume",
        ) from cause
    return state


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list | tuple) else []
    return [t for x in items for t in _tensors(x)]


def write_epoch(cfg: TrainConfig, epoch: int, parts: dict[str, Any], result: FitResult) -> None:
    """Rank 0 writes the epoch's state: `parts` (model, optimizer, scheduler by their keys),
    every rank's RNG state and the world size."""
    if (ck := _ckpt_path(cfg)) is None:
        return
    rngs = collectives.gather_objects(torch.get_rng_state())  # a collective: every rank calls it
    if not ddp.is_main():
        return
    state = {
        "epoch": epoch,
        "epochs": cfg.epochs,
        **{key: part.state_dict() for key, part in parts.items()},
        "history": result.epochs,
        "rng": rngs[0],
        "world_size": len(rngs),
    }
    if len(rngs) > 1:
        state["rng_ranks"] = rngs
    save_checkpoint(ck, state)


def resume(cfg: TrainConfig, parts: dict[str, Any], result: FitResult) -> int:
    """Restore `parts` (as write_epoch), RNG and history from `cfg.checkpoint_dir` when
    `cfg.resume`; returns the epoch to start from (0 without a checkpoint)."""
    ck = _ckpt_path(cfg)
    # rank 0 reads it and sends it to the others, so every rank decides alike
    found = bool(cfg.resume and ck and ck.is_file()) if ddp.is_main() else False
    state = load_checkpoint(ck) if found and ck else None
    state = collectives.broadcast_object(state)
    if state is None:
        if cfg.resume:
            log.warning(
                "--resume: no checkpoint found in %s; starting from scratch", cfg.checkpoint_dir
            )
        return 0
    saved_world, world = int(state.get("world_size", 1)), ddp.world_size()
    if saved_world != world:
        raise UsageError(
            f"--resume: the checkpoint in {cfg.checkpoint_dir} was written by a run of "
            f"{saved_world} process(es), this run has {world}",
            hint=f"resume with the same world size (torchrun --nnodes x --nproc_per_node = "
            f"{saved_world}; plain `compress` is 1), or start again without --resume",
        )
    if int(state.get("epochs", cfg.epochs)) != cfg.epochs:
        raise UsageError(
            f"--resume: the checkpoint in {cfg.checkpoint_dir} belongs to a "
            f"{state['epochs']}-epoch run, not {cfg.epochs}",
            hint="resume with the same --epochs, or start again without --resume",
        )
    for key, part in parts.items():
        part.load_state_dict(state[key])
    if "rng_ranks" in state:
        torch.set_rng_state(state["rng_ranks"][ddp.rank()])
    elif "rng" in state:
        torch.set_rng_state(state["rng"])
    result.epochs = list(state.get("history", []))
    result.resumed_from = int(state["epoch"]) + 1
    log.info("resumed from %s after epoch %d", ck, result.resumed_from)
    return result.resumed_from
