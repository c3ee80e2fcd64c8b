"""`compress train`, `compress eval` and `compress distill` (knowledge distillation from a
trained teacher into a student)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, pct, table, write_json

if TYPE_CHECKING:
    from compress.distillation.distill import DistillConfig
    from compress.models.data.splits import DataConfig
    from compress.stages.evaluate import EvalConfig
    from compress.training.config import TrainConfig


@o.verb("train")
def train(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: TrainConfig = o.options_from(o.TRAIN, take=("seed",)),
    data: DataConfig = o.options_from(o.DATA, only=o.TRAIN_DATA),
    mo: o.ModelOptions = o.options_from(o.MODEL),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Train a model on real data (Fashion-MNIST by default) and write an artifact.

    LeNet-5 with the defaults reaches ~91 % Fashion-MNIST test top-1 (BENCHMARKS.md gives
    measured times). A checkpoint is written after every epoch; --resume continues from it.
    """
    from compress import api
    from compress.cli.progress import RichHooks

    with RichHooks() as hooks:
        s = api.train(mo.of(model), out, how, data, overwrite=overwrite, hooks=hooks)
    m = s.metrics
    console.print(
        f"[green]trained[/] {model} ({s.params:,} params, {s.precision}) in {s.seconds:.0f} s: "
        f"val top-1 {pct(m['val']['top1'])}, test top-1 {pct(m['test']['top1'])}"
    )
    console.print(f"artifact: {out}")
    write_json(json_out, s.to_dict())


@o.verb("eval")
def evaluate(
    model: o.ModelOpt,
    how: EvalConfig = o.options_from(o.EVAL),
    mo: o.ModelOptions = o.options_from(o.MODEL),
    data: DataConfig = o.options_from(o.DATA, only=o.WHERE),
    json_out: o.JsonOpt = None,
) -> None:
    """Evaluate a model (PyTorch or ONNX artifact): top-1, top-5, loss, per-class, confusion."""
    from compress import api

    r = api.evaluate(mo.of(model), data, how)
    m = r.result
    title = f"{model} on {r.dataset['dataset']} {how.split} ({m.samples} images)"
    rows = [(name, pct(acc)) for name, acc in zip(r.class_names, m.per_class, strict=False)]
    console.print(table(title, ("class", "accuracy"), rows, right=("accuracy",)))
    console.print(f"top-1 {pct(m.top1)}  top-5 {pct(m.top5)}  loss {m.loss:.4f}")
    ran = r.where.effective_precision or r.where.precision
    console.print(f"ran on {r.where.runtime} ({ran})", highlight=False)
    write_json(json_out, r.to_dict())


Teacher = Annotated[
    str,
    typer.Option(
        "--teacher",
        "-t",
        help="Trained teacher: artifact directory, or zoo name / file.py:factory with "
        "--teacher-weights.",
    ),
]
Student = Annotated[
    str,
    typer.Option(
        "--student",
        "-s",
        help="Student: artifact directory (e.g. a pruned model), zoo name, or "
        "path/to/file.py:factory. A fresh student takes the teacher's classes and shape.",
    ),
]


@o.verb("distill")
def distill(
    teacher: Teacher,
    student: Student,
    out: o.OutOpt,
    how: DistillConfig = o.options_from(o.DISTILL, take=("epochs", "lr")),
    fit: TrainConfig = o.options_from(
        o.TRAIN, exclude=("label_smoothing", "resume"), take=("seed",), epochs=5
    ),
    teacher_weights: Annotated[
        str | None, typer.Option(help="Weights for a zoo/factory teacher (.safetensors, ...).")
    ] = None,
    student_weights: Annotated[
        str | None, typer.Option(help="Weights to start the student from.")
    ] = None,
    data: DataConfig = o.options_from(o.DATA, only=o.TRAIN_DATA),
    shape: o.ShapeOptions = o.options_from(o.SHAPE),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Distill a trained teacher into a student (Hinton KD, optional feature matching).

    Typical uses: recover a pruned model's accuracy from its dense parent
    (`--teacher dense/ --student pruned/`), or train a small architecture from a big one
    (`--teacher resnet18-art/ --student lenet5`).
    """
    from compress import api
    from compress.cli.progress import RichHooks

    t_ref = o.ShapeOptions(trust_pickle=shape.trust_pickle, trust_code=shape.trust_code).ref(
        teacher, teacher_weights
    )
    s_ref = shape.ref(student, student_weights)
    with RichHooks() as hooks:
        r = api.distill(t_ref, s_ref, out, how, data, train=fit, overwrite=overwrite, hooks=hooks)
    t = r.teacher.metrics
    console.print(
        f"[green]distilled[/] {r.student} ({r.params:,} params) from {teacher} "
        f"({r.teacher_params:,} params, test top-1 {pct(t['test']['top1'])}) in "
        f"{r.seconds:.0f} s, {r.precision}"
        + (f", {r.overflow_steps} loss-scaling overflow steps" if r.overflow_steps else "")
    )
    console.print(
        f"student test top-1 {pct(r.before['test']['top1'])} -> "
        f"{pct(r.metrics['test']['top1'])} (val {pct(r.before['val']['top1'])} -> "
        f"{pct(r.metrics['val']['top1'])})"
    )
    console.print(f"artifact: {out}")
    write_json(json_out, r.to_dict())
