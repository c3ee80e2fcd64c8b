"""`compress factorize`: a trained model -> its Linear layers as truncated SVDs, KD fine-tuned.

The chosen Linear layers of a copy of the trained parent become LowRankLinear pairs, then are
fine-tuned by KD from the parent. The PyTorch artifact's card records each layer's rank (so it
loads strictly, without pickle), the parameters before and after, and val/test top-1 of the
parent, right after the SVD, and after KD.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from compress.distillation.distill import DistillConfig, distill
from compress.factorization.svd import FactorizeConfig, factorize
from compress.models.data.datasets import DataBundle, DataConfig, load_data
from compress.models.zoo.registry import spec_of
from compress.pruning.flops import count_params
from compress.stages.common import Model, card_for, data_config_for, model_ref
from compress.stages.distill import load_teacher
from compress.stages.frame import stage_output
from compress.stages.results import FactorizeSummary
from compress.stages.train import final_metrics
from compress.training.fit import FitResult, Hooks, TrainConfig
from compress.training.precision import resolve_device


def run_factorize(
    model: Model,
    out: str | Path,
    config: FactorizeConfig | None = None,
    data: DataConfig | None = None,
    *,
    train: TrainConfig | None = None,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> FactorizeSummary:
    """Replace `model`'s Linear layers by truncated SVDs, fine-tune with KD from it, measure,
    write `out`; returns the summary (`compress.factorize`, `compress factorize`). Under
    torchrun every rank fine-tunes (DDP); rank 0 alone writes `out`."""
    cfg = config or FactorizeConfig()
    base = train or TrainConfig(seed=cfg.seed)
    with stage_output(out, overwrite) as frame:
        frame.join(resolve_device(base.device))
        src = load_teacher(model, data)  # an untrained parent has nothing to keep
        teacher = copy.deepcopy(src.model).eval()
        student = src.model
        records = factorize(student, cfg)  # every rank is checked before any layer changes
        bundle = load_data(data_config_for(data, src.card), spec_of(student))
        parent = final_metrics(teacher, bundle, None)
        after_svd = final_metrics(student, bundle, None)
        kd, fit = _fine_tune(student, teacher, bundle, cfg, base, hooks)
        after = final_metrics(student, bundle, fit)
        ranks = {r.layer: r.rank for r in records}
        summary = FactorizeSummary(
            out=str(out),
            ranks=ranks,
            layers=[asdict(r) for r in records],
            params_before=count_params(teacher),
            params=count_params(student),
            parent=parent,
            after_svd=after_svd,
            metrics=after,
            kd=kd,
            epochs=cfg.epochs,
        )
        card = card_for(src, bundle)
        card.trained, card.metrics, card.factorization = True, after, {"ranks": ranks}
        card.add_history(
            "factorize",
            source=model_ref(model).model,
            config=asdict(cfg),
            **{k: v for k, v in summary.to_dict().items() if k != "out"},
            fit=fit.to_dict() if fit is not None else None,
        )
        frame.save_model(student, card)
    return summary


def _fine_tune(
    student: nn.Module,
    teacher: nn.Module,
    bundle: DataBundle,
    cfg: FactorizeConfig,
    base: TrainConfig,
    hooks: Hooks | None,
) -> tuple[dict[str, Any] | None, FitResult | None]:
    """KD from the parent for `cfg.epochs` (none: nothing trained); (KD record, fit result)."""
    if cfg.epochs <= 0:
        return None, None
    dcfg = DistillConfig(temperature=cfg.temperature, alpha=cfg.alpha, epochs=cfg.epochs, lr=cfg.lr)
    result = distill(student, teacher, bundle, dcfg, base, hooks=hooks)
    return result.to_dict()["kd"], result.fit
