"""The fit loop every training stage shares (train, fine-tune after pruning, distill, QAT).

`fit(model, data, TrainConfig(...))`: pluggable losses (KD adds a teacher term), progress to
hooks, a checkpoint per epoch for `resume=True`. Under torchrun the same call trains with DDP:
each rank a shard of every epoch, metrics summed over ranks, rank 0 reports and checkpoints.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.distributed import collectives, sharding
from compress.distributed import group as ddp
from compress.models.data.datasets import DataBundle
from compress.models.errors import InvalidInputError
from compress.models.zoo.registry import spec_of
from compress.training import checkpoint
from compress.training.config import FitResult, Hooks, LogHooks, SilentHooks, TrainConfig
from compress.training.evaluate import EvalResult, all_reduce_eval, evaluate, torch_predictor
from compress.training.precision import resolve_amp, resolve_device

log = logging.getLogger(__name__)
__all__ = ["FitResult", "Hooks", "LogHooks", "SilentHooks", "TrainConfig", "fit"]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = max(1, cfg.epochs * steps)
    if cfg.schedule == "onecycle" and total >= 12:  # a few steps per phase
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=0.25
        )
    if cfg.schedule == "onecycle":  # a tiny run (search budget)
        log.info("only %d steps: cosine schedule instead of one-cycle", total)
    if cfg.schedule != "constant":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def fit(
    model: nn.Module,
    data: DataBundle,
    cfg: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    extra_params: Iterable[nn.Parameter] = (),
    hooks: Hooks | None = None,
) -> FitResult:
    """Train `model` in place on `data.train`, validating on `data.val` after each epoch.

    Under torchrun (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel for this
    call only, so a model whose layers changed shape (pruning) is simply fitted again."""
    torch.manual_seed(cfg.seed)
    dist, device = ddp.setup(resolve_device(cfg.device))
    hooks = (hooks or LogHooks()) if dist.is_main else SilentHooks()
    loop = _Loop(model, data, cfg, device, loss_fn, list(extra_params), hooks)
    if dist.active:
        loop.result.world_size, loop.result.dist_backend = dist.world_size, dist.backend
        torch.manual_seed(sharding.rank_seed(cfg.seed))  # own dropout/augmentation noise per rank
    start_epoch = checkpoint.resume(cfg, loop._parts(model), loop.result)
    loop.net = ddp.wrap(model, device)  # DDP when distributed (weights synced from rank 0)
    t0 = time.perf_counter()
    try:
        with collectives.collective_errors():
            for epoch in range(start_epoch, cfg.epochs):
                _run_epoch(model, data, loop, epoch)
    finally:
        # Free the DDP wrapper now: until collected, its reducer's hooks stay on `model` and
        # turn later backward passes (pruning importance) into stray all-reduces.
        wrapped, loop.net = loop.net is not model, model
        if wrapped:
            gc.collect()
    r = loop.result
    r.seconds = time.perf_counter() - t0
    if r.overflow_steps:
        log.info("loss scaling skipped %d of %d steps (fp16 overflow)", r.overflow_steps, r.steps)
    model.to("cpu").eval()
    return r


class _Loop:
    """What every step of one `fit` call shares: precision, optimizer, schedule and scaler."""

    def __init__(
        self,
        model: nn.Module,
        data: DataBundle,
        cfg: TrainConfig,
        device: torch.device,
        loss_fn: LossFn | None,
        extra: list[nn.Parameter],
        hooks: Hooks,
    ) -> None:
        self.policy = policy = resolve_amp(cfg.amp, device, model)
        log.info("training on %s, precision %s (%s)", device, policy.precision, policy.reason)
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net = model  # or its DDP wrapper under torchrun
        self.opt = make_optimizer([p for p in model.parameters() if p.requires_grad] + extra, cfg)
        self.sched = make_scheduler(self.opt, cfg, len(_train_loader(data, 0)))
        self.scaler = torch.amp.GradScaler(device.type, enabled=policy.scaler)
        ls = cfg.label_smoothing
        self.loss_fn = loss_fn or (lambda out, y, _: F.cross_entropy(out, y, label_smoothing=ls))
        self.cfg, self.device, self.hooks, self.extra = cfg, device, hooks, extra
        self.result = FitResult(
            device=str(device), precision=policy.precision, amp_reason=policy.reason
        )

    def _parts(self, model: nn.Module) -> dict[str, Any]:
        """What a checkpoint saves and resume restores, by its key."""
        return {"model": model, "optimizer": self.opt, "scheduler": self.sched}


def _run_epoch(model: nn.Module, data: DataBundle, loop: _Loop, epoch: int) -> None:
    """Train one epoch, validate when due, checkpoint, report."""
    cfg, result = loop.cfg, loop.result
    loader = _train_loader(data, epoch)  # per-epoch seeded order: resumable
    loop.hooks.on_epoch_start(epoch, cfg.epochs, len(loader))
    te = time.perf_counter()
    sums = _train_epoch(loop, loader)
    loss_sum, loss_seen, correct, seen = collectives.all_reduce_sums(sums)
    metrics = {
        "train_loss": loss_sum / max(loss_seen, 1),
        "train_acc": correct / max(seen, 1),
        "images_per_s": seen / max(time.perf_counter() - te, 1e-9),
    }
    if cfg.validate_every and ((epoch + 1) % cfg.validate_every == 0 or epoch + 1 == cfg.epochs):
        ev = _validate(model, data, loop.device)
        metrics |= {"val_top1": ev.top1, "val_loss": ev.loss}
        result.val_top1 = ev.top1
    metrics["seconds"] = time.perf_counter() - te
    result.epochs.append({"epoch": epoch + 1, **metrics})
    checkpoint.write_epoch(cfg, epoch, loop._parts(model), result)
    loop.hooks.on_epoch_end(epoch, metrics)


def _train_loader(data: DataBundle, epoch: int) -> torch.utils.data.DataLoader:
    """The epoch's training batches: this rank's shard under torchrun, else the whole set;
    both in an order seeded by (data seed, epoch), so a resumed run sees the same batches."""
    sampler = sharding.train_sampler(len(data.train), data.config.shuffle_seed, epoch)
    return data.loader("train", epoch=epoch, sampler=sampler)


def _validate(model: nn.Module, data: DataBundle, device: torch.device) -> EvalResult:
    """Validation top-1/loss; under torchrun each rank scores a share and the sums are merged."""
    n = spec_of(model).num_classes
    loader = data.loader("val", sampler=sharding.eval_sampler(len(data.val)))
    return all_reduce_eval(evaluate(torch_predictor(model, device), loader, n))


def _train_epoch(
    loop: _Loop, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, int, int, int]:
    """One pass over `loader`; returns this rank's (loss sum, samples in it, correct, seen)."""
    cfg, policy, device = loop.cfg, loop.policy, loop.device
    loop.net.train()
    loss_sum, correct, seen, loss_seen = 0.0, 0, 0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with policy.autocast(device):
            logits = loop.net(x)
            loss = loop.loss_fn(logits.float(), y, x)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value) and not policy.scaler:
            raise InvalidInputError(
                "training diverged (loss is NaN/Inf)", hint="lower --lr, or check the input data"
            )
        _step(loop, loss)
        if math.isfinite(loss_value):  # an overflowed (skipped) step does not count
            loss_sum += loss_value * len(y)
            loss_seen += len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        loop.hooks.on_batch(loss_value)
    return loss_sum, loss_seen, correct, seen


def _step(loop: _Loop, loss: torch.Tensor) -> None:
    """Backward, clip, optimizer and schedule step (fp16 loss scaling may skip the step)."""
    opt, scaler, policy = loop.opt, loop.scaler, loop.policy
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if loop.extra:
        collectives.average_gradients(loop.extra)  # DDP averages only the model's own gradients
    if loop.cfg.grad_clip:
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(loop.net.parameters(), loop.cfg.grad_clip)
    scale_before = scaler.get_scale() if policy.scaler else 0.0
    scaler.step(opt)
    scaler.update()
    loop.result.steps += 1
    if policy.scaler and scaler.get_scale() < scale_before:
        loop.result.overflow_steps += 1  # the scaler skipped this step (inf/NaN gradients)
    else:
        loop.sched.step()  # a step the scaler skipped does not advance the schedule
