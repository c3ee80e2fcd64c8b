"""Evaluation: top-1/top-5, loss, per-class accuracy and confusion matrix for any predictor.

A predictor is any callable from an input batch to logits, so PyTorch models and onnxruntime
sessions are measured by the same code on the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from compress.distributed import collectives

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalResult:
    """Metrics of one pass over one split; fractions in [0, 1]."""

    top1: float
    top5: float
    loss: float
    samples: int
    per_class: list[float]
    confusion: list[list[int]]

    def to_dict(self, *, full: bool = True) -> dict[str, object]:
        return {
            k: v for k, v in asdict(self).items() if full or k not in ("confusion", "per_class")
        }


def torch_predictor(model: nn.Module, device: torch.device | str = "cpu") -> Predictor:
    """Wrap a module: eval mode, no grad, inputs moved to `device`, logits back on CPU."""
    model.eval().to(device)

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device)).float().cpu()

    return predict


def evaluate(
    predict: Predictor, loader: DataLoader, num_classes: int, limit: int | None = None
) -> EvalResult:
    """Run `predict` over `loader` (up to `limit` samples) and summarize."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top5_hits, n = 0.0, 0, 0
    for x, y in loader:
        if limit is not None and n >= limit:
            break
        if limit is not None:
            x, y = x[: limit - n], y[: limit - n]
        logits = predict(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        k = min(5, logits.shape[1])
        top5_hits += int((logits.topk(k, dim=1).indices == y[:, None]).any(1).sum())
        confusion.index_put_((y, logits.argmax(1)), torch.ones_like(y), accumulate=True)
        n += len(y)
    return _summary(confusion, n, loss_sum, top5_hits)


def _summary(confusion: torch.Tensor, n: float, loss_sum: float, top5_hits: int) -> EvalResult:
    total = max(n, 1)
    return EvalResult(
        top1=float(confusion.diag().sum()) / total,
        top5=top5_hits / total,
        loss=loss_sum / n if n else float("nan"),
        samples=int(n),
        per_class=(confusion.diag().float() / confusion.sum(1).clamp(min=1).float()).tolist(),
        confusion=confusion.tolist(),
    )


def all_reduce_eval(ev: EvalResult) -> EvalResult:
    """Merge every rank's evaluation of its share into the result over the whole split."""
    if not collectives.group_active():
        return ev
    n = ev.samples
    confusion = collectives.all_reduce_(torch.tensor(ev.confusion, dtype=torch.float64))
    n_all, loss_all, top5_all = collectives.all_reduce_sums(
        [n, ev.loss * n if n else 0.0, ev.top5 * n]
    )
    return _summary(confusion.round().long(), n_all, loss_all, round(top5_all))
