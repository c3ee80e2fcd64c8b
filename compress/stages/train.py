"""`compress train`: fit a model on real data, evaluate it, write an artifact."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from compress.distributed import sharding
from compress.models.data.datasets import DataBundle, DataConfig, load_data
from compress.models.jsontypes import JsonObject
from compress.models.zoo.registry import spec_of
from compress.pruning.flops import count_params
from compress.stages.common import Model, card_for, data_config_for, load_source
from compress.stages.frame import stage_output
from compress.stages.results import TrainSummary
from compress.training.evaluate import all_reduce_eval, evaluate, torch_predictor
from compress.training.fit import FitResult, Hooks, TrainConfig, fit
from compress.training.precision import resolve_device


def checkpoint_dir_for(out: str | Path) -> Path:
    """Per-epoch checkpoints live beside the output until the artifact is written."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


def run_train(
    model: Model,
    out: str | Path,
    config: TrainConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> TrainSummary:
    """Train `model`, evaluate on val and test, write the artifact `out`; returns the summary
    stored in its card (`compress.train`, `compress train`). Under torchrun every rank trains
    (DDP) and gets the summary; rank 0 writes `out`, every rank returns once it exists."""
    cfg = config or TrainConfig()
    with stage_output(out, overwrite or cfg.resume, check=not cfg.resume) as frame:
        frame.join(resolve_device(cfg.device))  # before the model: GPU per rank
        torch.manual_seed(cfg.seed)  # the seed governs initialization too
        src = load_source(model, data)
        bundle = load_data(data_config_for(data, src.card), spec_of(src.model))
        ckpt = checkpoint_dir_for(out)
        cfg.checkpoint_dir = cfg.checkpoint_dir or str(ckpt)
        try:
            result = fit(src.model, bundle, cfg, hooks=hooks)
        except BaseException:
            with contextlib.suppress(OSError):  # a failed first save leaves nothing: rmdir
                Path(cfg.checkpoint_dir).rmdir()  # removes the folder only if it is empty
            raise
        metrics = final_metrics(src.model, bundle, result)
        card = card_for(src, bundle)
        card.trained = card.trained or cfg.epochs > 0
        card.precision = "fp32"  # stored weights; autocast precision is training_precision
        card.training_precision = result.precision
        card.metrics = metrics
        card.add_history(
            "train",
            config=asdict(cfg),
            data={**bundle.describe(), "augment": bundle.config.augment},
            fit=result.to_dict(),
            metrics=metrics,
            params=count_params(src.model),
        )
        frame.save_model(src.model, card)
        if frame.writes:
            shutil.rmtree(ckpt, ignore_errors=True)
    how = (result.seconds, result.precision, result.amp_reason, result.epochs)
    return TrainSummary(str(out), count_params(src.model), metrics, *how)


def final_metrics(model: Any, bundle: DataBundle, result: FitResult | None) -> JsonObject:
    """Validation and test metrics of the trained model (test is for reporting only); under
    torchrun each rank scores a share of each split and the results are merged."""
    predict = torch_predictor(model)
    n = model.spec.num_classes
    val, test = (
        all_reduce_eval(
            evaluate(predict, bundle.loader(s, sampler=sharding.eval_sampler(len(d))), n)
        )
        for s, d in (("val", bundle.val), ("test", bundle.test))
    )
    out: dict[str, Any] = {"val": val.to_dict(full=False), "test": test.to_dict(full=False)}
    if result is not None:
        out["train_seconds"] = round(result.seconds, 2)
    return out
