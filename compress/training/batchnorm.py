"""Re-estimate BatchNorm statistics from training images (adaptive BN).

After pruning, downstream BatchNorms still hold the old activations' statistics: a ResNet-50
pruned by 30 % scored 10 %, and 77 % once they were re-estimated on 2,560 training images
(EagleEye, Li et al. 2020). Forward passes only, no gradient step, nothing learned from labels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class BnRecalibration:
    """What adaptive BN did: images forwarded, BatchNorm layers re-estimated, seconds taken."""

    images: int
    layers: int
    seconds: float = 0.0


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, BATCHNORMS) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Any, images: int) -> BnRecalibration:
    """Reset every BatchNorm's running statistics and re-estimate them as the exact average
    over the first `images` images of `loader` (unaugmented batches). The model is left in eval
    mode; other layers (dropout) never see train mode. Returns what was done, for the card."""
    norms = [m for m in model.modules() if isinstance(m, BATCHNORMS) and m.track_running_stats]
    if not norms or images <= 0:
        return BnRecalibration(images=0, layers=0)
    t0 = time.perf_counter()
    saved = [(m, m.momentum) for m in norms]
    model.eval()
    device = next(model.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches seen
        m.train()
    seen = 0
    try:
        for x, _ in loader:
            x = x[: images - seen].to(device)
            model(x)
            seen += len(x)
            if seen >= images:
                break
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
    log.info(
        "BatchNorm statistics re-estimated on %d training images (%d layers)", seen, len(norms)
    )
    return BnRecalibration(seen, len(norms), round(time.perf_counter() - t0, 2))
