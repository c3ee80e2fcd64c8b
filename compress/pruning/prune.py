"""Structured pruning: physically remove channels, so the model is smaller and faster anywhere.

`prune(model, PruneConfig(ratio=0.5))` prunes in place with torch-pruning's dependency graph
(coupled layers shrink together; the classifier head never). MACs and parameter targets are met
by *planning*: the channel counts torch-pruning would leave at a candidate ratio give the counts
exactly (:class:`~compress.pruning.flops.Geometry`), a search picks the smallest ratio, then the
model is pruned once per step (`compress.pruning.session`). On error it is restored.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

import torch
from torch import nn

from compress.models.artifacts.structure import apply_structure, capture_structure
from compress.models.data.datasets import DataBundle
from compress.models.errors import CompressError, UnsupportedError, UsageError
from compress.pruning import achieved
from compress.pruning.config import (
    CRITERIA,
    DATA_CRITERIA,
    TARGETS,
    PruneConfig,
    TargetUnreachableError,
    parse_amount,
)
from compress.pruning.graph import Progress, build_pruner, make_importance
from compress.pruning.outcome import Achieved, Counts, PruneResult
from compress.pruning.policy import FinetuneRequest, SourceFacts, plan_finetune
from compress.pruning.session import Evaluator, ForwardBroken, PruneSession, example_input
from compress.training.batchnorm import has_batchnorm
from compress.training.fit import Hooks, TrainConfig

log = logging.getLogger(__name__)
# Replaces every target of a PruneConfig: probes set the one they want on top.
_NO_TARGET: dict[str, Any] = dict.fromkeys((*TARGETS, "from_sensitivity")) | {
    "global_pruning": False
}


def _check_inputs(model: nn.Module, cfg: PruneConfig, data: Any, finetune: Any) -> None:
    if not hasattr(model, "spec"):
        raise UsageError("prune() needs a model from models.create_model or an artifact (.spec)")
    if cfg.criterion in DATA_CRITERIA and data is None:
        raise UsageError(f"--criterion {cfg.criterion} needs training data to compute gradients")
    if isinstance(finetune, TrainConfig) and data is None:
        raise UsageError("fine-tuning needs training data")
    own_loop = callable(finetune) and not isinstance(finetune, TrainConfig)
    if cfg.kd and own_loop:
        raise UsageError(
            "kd=True distills with a TrainConfig; a fine-tuning callable owns its loss"
        )
    if (cfg.sparse_epochs or cfg.augment) and own_loop:
        raise UsageError(
            "sparse learning and augmentation train with a TrainConfig (a fine-tuning callable "
            "owns its own loop)"
        )
    if cfg.criterion == "bn-scale" and not has_batchnorm(model):
        raise UsageError(
            "--criterion bn-scale ranks channels by BatchNorm scales, and this model has no "
            "BatchNorm layer",
            hint="use --criterion l1 or l2 (weight magnitude) instead",
        )


def prune(
    model: nn.Module,
    cfg: PruneConfig,
    *,
    data: DataBundle | None = None,
    example_inputs: torch.Tensor | None = None,
    finetune: FinetuneRequest = None,
    evaluator: Evaluator | None = None,
    hooks: Hooks | None = None,
    facts: SourceFacts | None = None,
) -> PruneResult:
    """Prune `model` in place to `cfg`'s target; fine-tune on `data` as :func:`plan_finetune`
    decides from `cfg` and `finetune` (no default epochs here: `compress.prune` and the CLI add
    them where the data is known). `evaluator(model)` adds metrics to each step record. On error
    the model is restored and a CompressError says why."""
    _check_inputs(model, cfg, data, finetune)
    facts = facts or SourceFacts(data_known=data is not None)
    plan = plan_finetune(cfg, finetune, facts, default_epochs=0)
    cfg, tune = plan.config, (plan.train or (finetune if callable(finetune) else None))
    model.eval()
    x = example_inputs if example_inputs is not None else example_input(model)
    backup = (capture_structure(model), {k: v.clone() for k, v in model.state_dict().items()})
    t0 = time.perf_counter()
    try:
        run = PruneSession(model, cfg, x, data, tune, evaluator, hooks)
        _execute(run)
    except ForwardBroken as e:
        _restore(model, backup)
        raise _name_culprit(model, cfg, x, str(e)) from None
    except BaseException:
        _restore(model, backup)
        raise
    res = run.result
    res.after = run.counts()
    res.layers = _changed_layers(backup[0], model)
    res.finetune = {"said": plan.said, "epochs": plan.epochs, "kd": bool(cfg.kd)}
    res.prune_seconds = round(time.perf_counter() - t0 - res.finetune_seconds, 3)
    res.finetune_seconds = round(res.finetune_seconds, 3)
    _note_unpruned(run)
    return res


def _execute(run: PruneSession) -> None:
    cfg, kind = run.cfg, run.cfg.target_kind
    start = run.result.before
    f_max = run.max_progress()
    if kind in ("ratio", "layers"):
        run.check_final_ratio()
        achieved.refuse_unmeetable(cfg, run.asked_ratios())
        target: dict[str, Any] = {"ratio": cfg.ratio, "layer_ratios": cfg.layer_ratios}
    elif kind == "latency":
        target = {"ms": cfg.target_latency_ms, "batch": cfg.latency_batch}
        target |= {"threads": cfg.latency_threads, "runtime": "onnxruntime CPU"}
    else:
        target = {
            "value": str(getattr(cfg, f"target_{kind}")),
            "goal": cfg.count_goal(start.of(kind)),
        }
    run.result.target = {"kind": kind, **target}
    run.result.sparse = run.sparse_learn()  # before the search: it ranks the regularised weights
    lat_start = lat = run.latency() if kind == "latency" else 0.0
    for step in range(1, cfg.steps + 1):
        if kind in ("ratio", "layers"):
            run.prepare_importance()
            run.apply(step / cfg.steps)
        elif kind == "latency":
            g = run.step_goal(lat_start, float(cfg.target_latency_ms or 0), step)
            lat = run.run_latency_step(g, f_max, lat)
        else:
            g = run.step_goal(float(start.of(kind)), run.result.target["goal"], step)
            run.run_counting_step(kind, g, f_max)
        record: dict[str, Any] = {
            "step": step,
            "fraction": round(run.progress.f, 4),
            **asdict(run.counts()),
        }
        bn = run.recalibrate()
        if bn is not None:
            record["bn_recalibration"] = bn
        if run.evaluator and (cfg.finetune_epochs or step == cfg.steps):
            record["pruned"] = run.evaluator(run.model)
        tuned = run.tune(cfg.finetune_epochs or 0)
        if tuned is not None:
            record["finetuned"] = tuned
        run.result.steps.append(record)
        log.info(
            "step %d/%d: %s params, %s MACs", step, cfg.steps, record["params"], record["macs"]
        )
    _judge_achieved(run, start)
    tuned = run.tune((cfg.final_finetune_epochs or 0) - cfg.sparse_epochs)
    if tuned is not None:
        run.result.steps[-1]["final_finetuned"] = tuned


def _judge_achieved(run: PruneSession, start: Counts) -> None:
    """Requested vs achieved, into the result (and a note, or an error, beyond the tolerance)."""
    cfg, kind = run.cfg, run.cfg.target_kind
    if kind in ("macs", "params"):
        report: Achieved = achieved.total_report(cfg, kind, start, run.counts())
    elif kind in ("ratio", "layers") and not cfg.global_pruning:
        now = {n: int(run.pruner.DG.get_out_channels(m) or 0) for n, m, _ in run.groups}
        report = achieved.layer_report(cfg, run.asked_ratios(), now)
    else:
        return
    run.result.achieved = report
    note = achieved.judge(cfg, report)
    if note:
        run.result.notes.append(note)


def _restore(model: nn.Module, backup: tuple[dict[str, Any], dict[str, torch.Tensor]]) -> None:
    structure, state = backup
    apply_structure(model, structure)
    model.load_state_dict(state, strict=True)
    model.zero_grad(set_to_none=True)


def _changed_layers(before: dict[str, dict[str, Any]], model: nn.Module) -> dict[str, Any]:
    """{layer: {attribute: [before, after]}} for every layer whose shape changed."""
    out: dict[str, Any] = {}
    for name, d in capture_structure(model).items():
        b = before.get(name, {})
        diff = {k: [b.get(k), v] for k, v in d.items() if k != "type" and b.get(k) != v}
        if diff:
            out[name] = diff
    return out


def _note_unpruned(run: PruneSession) -> None:
    if run.cfg.target_kind == "layers" or run.progress.f == 0:
        return
    unchanged = [n for n, m, c in run.groups if int(run.pruner.DG.get_out_channels(m) or 0) == c]
    if unchanged:
        why = (
            "no BatchNorm in their group"
            if run.cfg.criterion == "bn-scale"
            else "too narrow, at the layer limit, or ranked important"
        )
        note = f"layers not pruned ({why}): {', '.join(unchanged)}"
        run.result.notes.append(note)
        log.info(note)


def _name_culprit(model: nn.Module, cfg: PruneConfig, x: torch.Tensor, error: str) -> CompressError:
    """The pruned model stopped running: find the first group whose pruning breaks it."""
    trial = copy.deepcopy(model)
    probe = replace(cfg, **{**_NO_TARGET, "ratio": 0.5, "max_layer_ratio": 1.0})
    culprit = None
    try:
        pruner, _ = build_pruner(trial, probe, x, make_importance("l2"), Progress(1.0), 0.5)
        names = {m: n for n, m in trial.named_modules()}
        for group in pruner.step(interactive=True):
            name = names.get(group[0].dep.target.module, "?")
            try:
                group.prune()
                with torch.no_grad():
                    trial.eval()(x)
            except Exception:
                culprit = name
                break
    except CompressError:
        pass
    if culprit:
        return UnsupportedError(
            f"pruning layer {culprit!r} breaks the model ({error})",
            hint=f"keep it out with --ignore {culprit}",
        )
    return UnsupportedError(
        f"the pruned model no longer runs ({error})",
        hint="--ignore the layers involved (a reshape with fixed sizes is a common cause)",
    )


def prune_layer_stepwise(
    model: nn.Module,
    layer: str,
    ratios: list[float],
    cfg: PruneConfig | None = None,
    example_inputs: torch.Tensor | None = None,
) -> Iterator[tuple[float, nn.Module, Counts]]:
    """Prune a copy of `model` at `layer` only, to each of the increasing `ratios` in turn;
    yields (ratio, the pruned copy, its params/MACs). One dependency graph for all ratios."""
    ratios = sorted(ratios)
    if not ratios or not ratios[0] > 0 or not ratios[-1] < 1:
        raise UsageError(f"ratios must be in (0, 1), got {ratios}")
    base = cfg or PruneConfig(ratio=0.0)
    probe = replace(base, **{**_NO_TARGET, "layer_ratios": {layer: ratios[-1]}, "steps": 1})
    trial = copy.deepcopy(model)
    x = example_inputs if example_inputs is not None else example_input(trial)
    run = PruneSession(trial, probe, x, None, None, None, None)
    run.check_final_ratio()
    for r in ratios:
        run.prepare_importance()
        try:
            run.apply(r / ratios[-1])
        except ForwardBroken as e:
            raise UnsupportedError(
                f"pruning layer {layer!r} breaks the model ({e})", hint=f"--ignore {layer}"
            ) from None
        yield r, trial, run.counts()


__all__ = [
    "CRITERIA",
    "DATA_CRITERIA",
    "PruneConfig",
    "TargetUnreachableError",
    "parse_amount",
    "prune",
    "prune_layer_stepwise",
]
