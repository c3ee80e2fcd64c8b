"""The training loop's types: its config, its result and the progress hooks it reports to
(apart from `fit`, so the checkpoint module `fit` uses can name them without a cycle)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Protocol

from compress.models.jsontypes import JsonObject
from compress.models.options import check_options, option

log = logging.getLogger(__name__)
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass
class TrainConfig:
    """Training settings; the defaults train LeNet-5 on Fashion-MNIST to ~91 % test top-1."""

    epochs: int = option(15, "Training epochs.", min=0)
    lr: float = option(4e-3, "Peak learning rate.", above=0)
    weight_decay: float = option(1e-4, "Weight decay.")
    optimizer: str = option("adamw", "adamw or sgd.", choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum.", cli=False)
    schedule: str = option("onecycle", "onecycle, cosine or constant.", choices=SCHEDULES)
    label_smoothing: float = option(0.0, "Label smoothing.", min=0, below=1)
    grad_clip: float | None = option(None, "Gradient-norm clip.", cli=False)
    seed: int = option(0, "Seed of init and batch order.", cli=False)
    device: str = option("auto", "auto, cpu or cuda[:N].")
    amp: str = option(
        "auto",
        "Mixed precision: off, fp16 (CUDA), bf16, or auto (fp16 on CUDA; bf16 "
        "only on CPUs with native bf16 and for models big enough to gain from it,"
        " else fp32).",
    )
    channels_last: bool = option(False, "Channels-last memory format.")
    checkpoint_dir: str | None = option(None, "Where the per-epoch checkpoint goes.", cli=False)
    resume: bool = option(False, "Continue an interrupted run from OUT.checkpoint/.")
    validate_every: int = option(1, "Validate every N epochs.", cli=False)

    def __post_init__(self) -> None:
        check_options(self)


class Hooks(Protocol):
    """Progress callbacks; the CLI implements them with a rich progress bar."""

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...
    def on_batch(self, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...


class SilentHooks:
    """What ranks other than 0 report: nothing."""

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self.epochs = epochs

    def on_batch(self, loss: float) -> None:
        pass

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        pass


class LogHooks(SilentHooks):
    """Default hooks: one log line per epoch."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        log.info("epoch %d/%d %s", epoch + 1, self.epochs, shown)


@dataclass
class FitResult:
    """What a fit did: per-epoch metrics, final validation top-1, time, precision used."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    val_top1: float | None = None
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    amp_reason: str = ""
    overflow_steps: int = 0  # optimizer steps skipped by fp16 loss scaling (inf/NaN grads)
    steps: int = 0
    resumed_from: int | None = None
    world_size: int = 1  # processes that trained together (torchrun)
    dist_backend: str | None = None  # gloo or nccl when world_size > 1

    def to_dict(self) -> JsonObject:
        return asdict(self)
