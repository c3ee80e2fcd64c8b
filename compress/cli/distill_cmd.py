"""`compress distill`: knowledge distillation from a trained teacher into a student."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import console, pct, write_json

if TYPE_CHECKING:  # imports torch; loaded when the command runs
    from compress.distillation.distill import DistillConfig


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
FeatureDistill = Annotated[
    str | None,
    typer.Option(
        help="Also match feature maps: `auto`, or teacher_layer:student_layer[,...]; "
        "1x1-conv adapters bridge different widths."
    ),
]


@dataclass(frozen=True)
class DistillOptions(o.OptionGroup):
    """The distillation loss; the training run that minimizes it is a :class:`o.FitOptions`."""

    temperature: Annotated[
        float, typer.Option(help="Softmax temperature T for the teacher term (> 0).")
    ] = 2.0
    alpha: Annotated[
        float,
        typer.Option(help="Weight of the teacher term in [0, 1]; 1 - alpha weighs the labels."),
    ] = 0.5
    feature_distill: FeatureDistill = None
    feature_weight: Annotated[float, typer.Option(help="Weight of the feature loss.")] = 1.0
    int4_layers: Annotated[
        str | None,
        typer.Option(
            help="Linear or convolution layers (module names, comma-separated, e.g. fc1.first) "
            "trained on the int4 grid `compress quantize` stores them on (MatMulNBits for "
            "Linear), so it stores them in int4 without rounding loss (it picks them up from "
            "the card)."
        ),
    ] = None
    int4_block_size: Annotated[
        int,
        typer.Option(
            help="Weights per int4 scale for --int4-layers (a power of 2 >= 16; match "
            "quantize's --block-size)."
        ),
    ] = 32

    def config(self, fit: o.FitOptions) -> DistillConfig:
        """The library's DistillConfig (validated there), for the run `fit` describes."""
        from compress.distillation.distill import DistillConfig

        return DistillConfig(
            temperature=self.temperature,
            alpha=self.alpha,
            epochs=fit.epochs,
            lr=fit.lr,
            features=self.feature_distill,
            feature_weight=self.feature_weight,
            int4_layers=self.int4_layers,  # type: ignore[arg-type]  # split in DistillConfig
            int4_block_size=self.int4_block_size,
        )


def distill(
    teacher: Teacher,
    student: Student,
    out: o.OutOpt,
    how: DistillOptions = DistillOptions(),
    fit: o.FitOptions = o.FitOptions(epochs=5),
    teacher_weights: Annotated[
        str | None, typer.Option(help="Weights for a zoo/factory teacher (.safetensors, ...).")
    ] = None,
    student_weights: Annotated[
        str | None, typer.Option(help="Weights to start the student from.")
    ] = None,
    augment: Annotated[
        bool, typer.Option(help="Random flips and crops (turns off teacher-logit caching).")
    ] = False,
    batch_size: o.BatchSizeOpt = 128,
    seed: o.SeedOpt = 0,
    limit: o.LimitOpt = None,
    shape: o.ShapeOptions = o.ShapeOptions(),
    data: o.DataOptions = o.DataOptions(),
    dev: o.DeviceOptions = o.DeviceOptions(),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Distill a trained teacher into a student (Hinton KD, optional feature matching).

    Typical uses: recover a pruned model's accuracy from its dense parent
    (`--teacher dense/ --student pruned/`), or train a small architecture from a big one
    (`--teacher resnet18-art/ --student lenet5`).
    """
    from compress.cli.progress import RichHooks
    from compress.stages.distill import run_distill

    kd, cfg = how.config(fit), fit.config(seed, dev)
    t_ref = o.ShapeOptions(trust_pickle=shape.trust_pickle, trust_code=shape.trust_code).ref(
        teacher, teacher_weights
    )
    s_ref = shape.ref(student, student_weights)
    dc = data.config(batch_size=batch_size, seed=seed, limit=limit, augment=augment)
    with RichHooks() as hooks:
        r = run_distill(
            t_ref, s_ref, kd, dc, out, train_cfg=cfg, overwrite=overwrite, hooks=hooks
        ).to_dict()
    _print(r, teacher, out)
    write_json(json_out, r)


def _print(r: dict[str, Any], teacher: str, out: str) -> None:
    t = r["teacher"]["metrics"]
    console.print(
        f"[green]distilled[/] {r['student']} ({r['params']:,} params) from {teacher} "
        f"({r['teacher_params']:,} params, test top-1 {pct(t['test']['top1'])}) in "
        f"{r['seconds']:.0f} s, {r['precision']}"
        + (f", {r['overflow_steps']} loss-scaling overflow steps" if r["overflow_steps"] else "")
    )
    console.print(
        f"student test top-1 {pct(r['before']['test']['top1'])} -> "
        f"{pct(r['metrics']['test']['top1'])} (val {pct(r['before']['val']['top1'])} -> "
        f"{pct(r['metrics']['val']['top1'])})"
    )
    console.print(f"artifact: {out}")


def register(app: typer.Typer) -> None:
    app.command("distill")(o.with_groups(distill))
