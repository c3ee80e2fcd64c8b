"""`compress distill`: train a student from a trained teacher and write the student artifact.

The student may be an artifact (its lineage continues), a zoo name or a `file.py:factory` (a
fresh one takes the teacher's classes and input shape); the data defaults to the teacher's.
The card records the teacher's lineage, the KD settings and the student's accuracy before/after.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.distillation.distill import (
    DistillConfig,
    DistillResult,
    check_compatible,
    distill,
    teacher_input,
)
from compress.models.artifacts.artifact import Card
from compress.models.artifacts.resolve import ModelSource
from compress.models.data.datasets import DataBundle, DataConfig, load_data
from compress.models.errors import UsageError, WeightsError
from compress.models.zoo.registry import spec_of
from compress.pruning.flops import count_params
from compress.stages.common import (
    Model,
    ModelRef,
    card_for,
    data_config_for,
    load_source,
    model_ref,
)
from compress.stages.frame import stage_output
from compress.stages.results import DistillSummary, TeacherLineage
from compress.stages.train import final_metrics
from compress.training.evaluate import evaluate, torch_predictor
from compress.training.fit import Hooks, TrainConfig
from compress.training.precision import resolve_amp, resolve_device


def run_distill(
    teacher: Model,
    student: Model,
    out: str | Path,
    config: DistillConfig | None = None,
    data: DataConfig | None = None,
    *,
    train: TrainConfig | None = None,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> DistillSummary:
    """Train `student` from `teacher`'s soft labels (knowledge distillation), evaluate it
    before and after on val and test, write `out` (`compress.distill`, `compress distill`;
    under torchrun every rank trains, rank 0 writes and the others return once it exists)."""
    cfg = config or DistillConfig()
    with stage_output(out, overwrite) as frame:
        tcfg = cfg.train_config(train)
        _, device = frame.join(resolve_device(tcfg.device))  # before the teacher moves
        resolve_amp(tcfg.amp, device)  # an impossible --amp fails first
        if tcfg.resume or tcfg.checkpoint_dir:
            raise UsageError("distill does not checkpoint or resume (the adapters are not saved)")
        t_src = load_teacher(teacher, data)
        t_spec = spec_of(t_src.model)
        torch.manual_seed(tcfg.seed)  # a fresh student starts as `compress train` would
        s_src = load_source(_shaped_like(model_ref(student), t_spec), data)
        check_compatible(t_spec, spec_of(s_src.model))
        bundle = load_data(data_config_for(data, t_src.card), spec_of(s_src.model))
        teacher_metrics = _teacher_metrics(t_src, bundle)
        before = final_metrics(s_src.model, bundle, None)
        result = distill(s_src.model, t_src.model, bundle, cfg, tcfg, hooks=hooks)
        fit = result.fit
        summary = DistillSummary(
            out=str(out),
            teacher=teacher_lineage(t_src, teacher_metrics),
            student=s_src.ref,
            params=count_params(s_src.model),
            teacher_params=count_params(t_src.model),
            before=before,
            metrics=final_metrics(s_src.model, bundle, fit),
            kd=result.to_dict()["kd"],
            feature_pairs=result.feature_pairs,
            teacher_cached=result.teacher_cached,
            seconds=fit.seconds,
            precision=fit.precision,
            amp_reason=fit.amp_reason,
            overflow_steps=fit.overflow_steps,
            epochs=fit.epochs,
        )
        frame.save_model(s_src.model, _card(s_src, bundle, summary, result))
    return summary


def _card(student: ModelSource, bundle: DataBundle, s: DistillSummary, r: DistillResult) -> Card:
    """The student's card: trained, its metrics, and the distill history entry."""
    card = card_for(student, bundle)
    card.trained, card.metrics, card.training_precision = True, s.metrics, r.fit.precision
    card.add_history(
        "distill",
        teacher=asdict(s.teacher),
        student={"ref": student.ref, "weights": student.weights, "trained": student.trained},
        kd=s.kd,
        feature_pairs=s.feature_pairs,
        teacher_cached=s.teacher_cached,
        config=r.to_dict()["train_config"],
        data=bundle.describe(),
        fit=r.fit.to_dict(),
        training_precision=r.fit.precision,
        metrics_before=s.before,
        metrics=s.metrics,
        params=s.params,
    )
    return card


def load_teacher(model: Model, data: DataConfig | None) -> ModelSource:
    """The teacher, refused unless it has trained weights (an untrained teacher teaches noise)."""
    src = load_source(model, data)
    if not src.trained:
        how = "artifact is marked untrained" if src.card is not None else "has no weights"
        raise WeightsError(
            f"teacher {model_ref(model).model} {how}",
            hint="pass a trained artifact (`compress train ... --out DIR`) or "
            "--teacher-weights FILE",
        )
    return src


def _shaped_like(ref: ModelRef, spec: Any) -> ModelRef:
    """A fresh student defaults to the teacher's classes and input shape."""
    keys = ("num_classes", "in_channels", "input_size")
    return replace(ref, **{k: getattr(ref, k) or getattr(spec, k) for k in keys})


def _teacher_metrics(teacher: ModelSource, bundle: DataBundle) -> dict[str, Any]:
    """The teacher's val/test accuracy: from its card when measured on these same splits,
    else measured now (inputs re-normalized for the teacher)."""
    card = teacher.card
    if card is not None and card.metrics.get("test") and _same_splits(card, bundle):
        return {**card.metrics, "source": "card"}
    model: nn.Module = teacher.model
    predict = torch_predictor(model)
    convert = teacher_input(bundle.train.spec, spec_of(model))
    n = spec_of(model).num_classes
    out: dict[str, Any] = {"source": "measured"}
    for split in ("val", "test"):
        ev = evaluate(lambda x: predict(convert(x)), bundle.loader(split), n)
        out[split] = ev.to_dict(full=False)
    return out


def _same_splits(card: Card, bundle: DataBundle) -> bool:
    d, now = card.dataset or {}, bundle.describe()
    keys = ("dataset", "train", "val", "test", "val_seed")
    return all(d.get(k) == now.get(k) for k in keys)


def teacher_lineage(teacher: ModelSource, metrics: dict[str, Any]) -> TeacherLineage:
    """What the student card says about its teacher: enough to find and trust it again."""
    card = teacher.card
    return TeacherLineage(
        ref=teacher.ref,
        weights=teacher.weights,
        architecture=spec_of(teacher.model).name,
        params=count_params(teacher.model),
        content_hash=card.content_hash if card else None,
        history=card.history if card else [],
        metrics=metrics,
    )
