"""Sparse learning inside the pruning budget: train with a group regulariser before the cut.

torch-pruning's GroupNormPruner / GrowingRegPruner push whole channel groups towards zero (via
the gradients, after each backward; weight decay off, it would shrink all groups alike), so the
ranking then removes channels that carry little. The epochs come out of the fine-tuning budget.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.distributed import collectives, sharding
from compress.models.data.datasets import DataBundle
from compress.models.errors import InvalidInputError, UnsupportedError
from compress.pruning.config import PruneConfig
from compress.pruning.graph import ignored_modules
from compress.pruning.outcome import SparseLearning
from compress.training.fit import TrainConfig, make_optimizer, make_scheduler
from compress.training.precision import resolve_device

log = logging.getLogger(__name__)


def make_regularizer(model: nn.Module, cfg: PruneConfig, x: torch.Tensor) -> Any:
    """The torch-pruning pruner used only for its regulariser (it never prunes here)."""
    import torch_pruning as tp

    imp = tp.importance.GroupMagnitudeImportance(p=2)
    common: dict[str, Any] = {
        "importance": imp,
        "reg": cfg.sparse_reg,
        "ignored_layers": ignored_modules(model, cfg.ignore),
        "global_pruning": cfg.global_pruning,
    }
    try:
        if cfg.sparse_method == "growing-reg":
            # the coefficient grows by `reg` per epoch for the least important groups
            return tp.pruner.GrowingRegPruner(model, x, delta_reg=cfg.sparse_reg, **common)
        return tp.pruner.GroupNormPruner(model, x, **common)
    except Exception as e:
        raise UnsupportedError(
            f"torch-pruning could not build the {cfg.sparse_method} regulariser: "
            f"{type(e).__name__}: {e}",
            hint="drop --sparse-epochs for this model",
        ) from e


def sparse_learn(
    model: nn.Module, cfg: PruneConfig, data: DataBundle, tc: TrainConfig, x: torch.Tensor
) -> SparseLearning:
    """`cfg.sparse_epochs` of regularised training of `model` in place (fp32; under torchrun the
    ranks' gradients are averaged)."""
    reg = make_regularizer(model, cfg, x)
    reg.update_regularizer()  # the groups of the model as it is now
    device = resolve_device(tc.device)
    model.to(device)
    stc = replace(tc, epochs=cfg.sparse_epochs, weight_decay=0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, stc)
    batches = len(data.loader("train", epoch=0))
    sched = make_scheduler(
        opt, replace(stc, schedule=cfg.finetune_schedule or tc.schedule), batches
    )
    torch.manual_seed(tc.seed)
    t0, loss_sum, seen = time.perf_counter(), 0.0, 0
    for epoch in range(cfg.sparse_epochs):
        model.train()
        loss_sum, seen = 0.0, 0
        # under torchrun each rank takes its shard and the gradients are averaged: same weights
        shard = sharding.train_sampler(len(data.train), data.config.shuffle_seed, epoch)
        for xb, yb in data.loader("train", epoch=epoch, sampler=shard):
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing or 0.0)
            if not math.isfinite(float(loss.detach())):
                raise InvalidInputError(
                    "sparse learning diverged (loss is NaN/Inf)", hint="lower --sparse-reg or --lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            collectives.average_gradients(params)
            reg.regularize(model)  # adds the group penalty's gradient
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(yb)
            seen += len(yb)
        if cfg.sparse_method == "growing-reg":
            reg.update_reg()
        log.info(
            "sparse learning epoch %d/%d: train loss %.4f",
            epoch + 1,
            cfg.sparse_epochs,
            loss_sum / max(seen, 1),
        )
    model.to("cpu").eval()
    model.zero_grad(set_to_none=True)
    seconds, mean_loss = round(time.perf_counter() - t0, 2), round(loss_sum / max(seen, 1), 4)
    return SparseLearning(
        cfg.sparse_epochs, cfg.sparse_method, cfg.sparse_reg, seconds, mean_loss, _spread(reg)
    )


@torch.no_grad()
def _spread(reg: Any) -> float:
    """max / median of the group norms over all groups (how far sparse learning separated them)."""
    norms = []
    for group in reg.DG.get_all_groups(
        ignored_layers=reg.ignored_layers, root_module_types=reg.root_module_types
    ):
        imp = reg.estimate_importance(group)
        if imp is not None:
            norms.append(imp.sqrt() / imp.sqrt().max().clamp_min(1e-12))
    if not norms:
        return 0.0
    allv = torch.cat(norms)
    return round(float(allv.max() / allv.median().clamp_min(1e-12)), 3)
