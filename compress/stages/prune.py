"""`compress prune` and `compress sensitivity`: model in, measured pruned artifact / report out.

A pruned card records before and after: parameters, MACs, weights file size, latency (ort CPU
and torch eager, median) and, for trained models, val/test top-1. A zoo model without weights
is refused: pruning random weights is meaningless unless the study is about latency only
(`--weights random`, recorded as untrained).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from compress.distributed import collectives
from compress.models.artifacts.artifact import FORMAT, Card
from compress.models.artifacts.resolve import ModelSource, missing_weights_hint
from compress.models.data.datasets import DataBundle, DataConfig, load_data
from compress.models.errors import UsageError
from compress.models.zoo.registry import spec_of
from compress.pruning.flops import count_ops
from compress.pruning.latency import LatencyConfig, measure_latency
from compress.pruning.policy import FinetuneRequest, SourceFacts, plan_finetune
from compress.pruning.prune import DATA_CRITERIA, PruneConfig, prune
from compress.pruning.sensitivity import SensitivityConfig, SensitivityResult, analyze, write_report
from compress.stages.common import Model, card_for, data_config_for, load_source
from compress.stages.frame import stage_output
from compress.stages.results import Measurement, PruneSummary
from compress.training.evaluate import evaluate, torch_predictor
from compress.training.fit import Hooks
from compress.training.precision import resolve_device

log = logging.getLogger(__name__)


def require_trained(src: ModelSource) -> None:
    """Refuse to prune a freshly initialized zoo/factory model unless asked for explicitly."""
    if src.trained or src.weights == "random" or src.card is not None:
        return
    raise UsageError(
        f"{src.ref} has no trained weights: pruning an untrained network measures nothing",
        hint=missing_weights_hint(src.ref, "prune"),
    )


def weights_bytes(model: nn.Module) -> int:
    """Exact size of the model.safetensors file this model would be saved as."""
    from safetensors.torch import save

    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return len(save(sd, metadata={"format": FORMAT}))


def accuracy(model: nn.Module, bundle: DataBundle) -> dict[str, float]:
    """Validation and test top-1 (fractions)."""
    predict, n = torch_predictor(model), spec_of(model).num_classes
    return {f"{s}_top1": evaluate(predict, bundle.loader(s), n).top1 for s in ("val", "test")}


def measure(
    model: nn.Module, bundle: DataBundle | None, latency: LatencyConfig | None
) -> Measurement:
    """Everything the card compares before and after."""
    return Measurement(
        ops=count_ops(model),
        file_bytes=weights_bytes(model),
        latency=measure_latency(model, latency) if latency is not None else None,
        metrics=accuracy(model, bundle) if bundle is not None else None,
    )


def source_facts(src: ModelSource, data: DataConfig | None) -> SourceFacts:
    """What the fine-tuning policy needs to know: trained, on known data (named by the card or
    given), and how (the card's last `train` entry: TrainConfig, whether augmented)."""
    card = src.card
    named = card is not None and bool(card.dataset)
    given = data is not None and data.dataset is not None
    history = card.history if card is not None else []
    trained = [  # an entry of 0 epochs (a recipe's evaluation) says nothing of how it trained
        e for e in history if e.get("stage") == "train" and (e.get("config") or {}).get("epochs")
    ]
    last = trained[-1] if trained else {}
    augment = (last.get("data") or {}).get("augment")
    return SourceFacts(
        trained=src.trained,
        data_known=named or given,
        augmented=None if augment is None else bool(augment),
        recipe=last.get("config") or None,
    )


def run_prune(
    model: Model,
    out: str | Path,
    config: PruneConfig | None = None,
    data: DataConfig | None = None,
    *,
    finetune: FinetuneRequest = None,
    latency: bool = True,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> PruneSummary:
    """Prune `model` structurally (channels removed), fine-tune, measure before/after, write
    the artifact `out` (`compress.prune`, `compress prune`).

    `finetune` (decided by `compress.pruning.policy.plan_finetune`): a TrainConfig used whole,
    a mapping of training keys over the default recipe (`{"lr": 2e-3}`; `config.finetune_lr`
    is its default lr), or None (5 epochs of KD where the training data is known;
    `PruneConfig(finetune_epochs=0)` skips it). `latency=False` or `config.latency=False`: not
    measured. Under torchrun every rank prunes identically and fine-tunes (DDP); rank 0
    measures and writes."""
    config = config or PruneConfig()
    with stage_output(out, overwrite) as frame:
        src = load_source(model, data)
        require_trained(src)
        plan = plan_finetune(config, finetune, source_facts(src, data))
        cfg, tune = plan.config, plan.train  # the card records what ran
        log.info("%s", plan.said)
        dist, _ = frame.join(resolve_device(tune.device) if tune else "cpu")
        net, bundle = src.model, None
        if src.trained or cfg.criterion in DATA_CRITERIA or tune is not None:
            bundle = load_data(data_config_for(data, src.card), spec_of(net))
        measured = latency and cfg.latency
        lat = LatencyConfig(cfg.latency_batch, cfg.latency_threads) if measured else None
        before = collectives.on_main(lambda: measure(net, bundle if src.trained else None, lat))
        evaluator = None  # rank 0 scores the steps for the card
        if bundle is not None and src.trained and dist.is_main:
            evaluator = functools.partial(accuracy, bundle=bundle)
        result = prune(net, cfg, data=bundle, finetune=tune, evaluator=evaluator, hooks=hooks)
        result.finetune["said"] = plan.said
        trained = src.trained or tune is not None
        after = collectives.on_main(lambda: measure(net, bundle if trained else None, lat))
        summary = PruneSummary(
            out=str(out),
            model=src.ref,
            weights=src.weights,
            untrained=not trained,
            criterion=cfg.criterion or "",
            global_pruning=cfg.global_pruning,
            before=before,
            after=after,
            speedup=_speedup(before, after),
            result=result,
        )
        card = _card(card_for(src, bundle), summary, asdict(cfg), asdict(tune) if tune else None)
        frame.save_model(net, card)
    return summary


def _card(card: Card, summary: PruneSummary, config: dict[str, Any], finetune: Any) -> Card:
    """The pruned model's card: trained or not, its metrics, the prune history entry."""
    card.trained = trained = not summary.untrained
    measured = summary.to_dict()
    if trained and (m := summary.after.metrics) is not None:
        card.metrics = {split: {"top1": m[f"{split}_top1"]} for split in ("val", "test")}
    card.add_history(
        "prune",
        config=config,
        finetune=finetune,
        before=measured["before"],
        after=measured["after"],
        result=summary.result.to_dict(),
        trained=trained,
    )
    card.prune = {k: measured[k] for k in ("before", "after", "speedup", "untrained")}
    return card


def _speedup(b: Measurement, a: Measurement) -> dict[str, float | None]:
    """Before/after ratios: params, macs, file, ort, torch (None: not measured)."""
    lb, la = b.latency, a.latency
    pairs = {
        "params": (b.params, a.params),
        "macs": (b.macs, a.macs),
        "file": (b.file_bytes, a.file_bytes),
        "ort": (lb and lb.ort_ms, la and la.ort_ms),
        "torch": (lb and lb.torch_ms, la and la.torch_ms),
    }
    return {k: round(x / y, 3) if x and y else None for k, (x, y) in pairs.items()}


# ----------------------------------------------------------------------------- sensitivity


def run_sensitivity(
    model: Model,
    out: str | Path,
    config: SensitivityConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
) -> SensitivityResult:
    """Prune each layer of `model` alone at a few ratios (`compress.sensitivity`, `compress
    prune --sensitivity`); the report (json, md, png) goes to `out`."""
    cfg = config or SensitivityConfig()
    val_limit = cfg.val_limit or None
    with stage_output(out, overwrite, collective=False) as frame:
        src = load_source(model, data)
        require_trained(src)
        net = src.model
        score = None
        if src.trained:
            bundle = load_data(data_config_for(data, src.card), spec_of(net))
            n = spec_of(net).num_classes

            def score(m: nn.Module) -> float:
                return evaluate(torch_predictor(m), bundle.loader("val"), n, limit=val_limit).top1

        res = analyze(net, cfg, score, model_name=src.ref)
        if not src.trained:
            res.notes.append("untrained model (--weights random): accuracy not measured")
        res.config["val_limit"] = val_limit  # null: the whole split, as before
        with frame.directory() as tmp:
            write_report(res, tmp)
    return res
