"""`compress distill`: knowledge distillation from a trained teacher into a student."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, pct, write_json


def distill(
    teacher: Annotated[
        str,
        typer.Option(
            "--teacher",
            "-t",
            help="Trained teacher: artifact directory, or zoo name / file.py:factory with "
            "--teacher-weights.",
        ),
    ],
    student: Annotated[
        str,
        typer.Option(
            "--student",
            "-s",
            help="Student: artifact directory (e.g. a pruned model), zoo name, or "
            "path/to/file.py:factory. A fresh student takes the teacher's classes and shape.",
        ),
    ],
    out: o.OutOpt,
    temperature: Annotated[
        float, typer.Option(help="Softmax temperature T for the teacher term (> 0).")
    ] = 2.0,
    alpha: Annotated[
        float,
        typer.Option(help="Weight of the teacher term in [0, 1]; 1 - alpha weighs the labels."),
    ] = 0.5,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 5,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 4e-3,
    feature_distill: Annotated[
        str | None,
        typer.Option(
            help="Also match feature maps: `auto`, or teacher_layer:student_layer[,...]; "
            "1x1-conv adapters bridge different widths."
        ),
    ] = None,
    feature_weight: Annotated[float, typer.Option(help="Weight of the feature loss.")] = 1.0,
    teacher_weights: Annotated[
        str | None, typer.Option(help="Weights for a zoo/factory teacher (.safetensors, ...).")
    ] = None,
    student_weights: Annotated[
        str | None, typer.Option(help="Weights to start the student from.")
    ] = None,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 1e-4,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = "adamw",
    schedule: Annotated[str, typer.Option(help="onecycle, cosine or constant.")] = "onecycle",
    augment: Annotated[
        bool, typer.Option(help="Random flips and crops (turns off teacher-logit caching).")
    ] = False,
    batch_size: o.BatchSizeOpt = 128,
    seed: o.SeedOpt = 0,
    dataset: o.DatasetOpt = None,
    data_dir: o.DataDirOpt = None,
    limit: o.LimitOpt = None,
    num_classes: o.NumClassesOpt = None,
    in_channels: o.InChannelsOpt = None,
    input_size: o.InputSizeOpt = None,
    trust_pickle: o.TrustPickleOpt = False,
    device: o.DeviceOpt = "auto",
    amp: o.AmpOpt = "auto",
    channels_last: Annotated[bool, typer.Option(help="Channels-last memory format.")] = False,
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Distill a trained teacher into a student (Hinton KD, optional feature matching).

    Typical uses: recover a pruned model's accuracy from its dense parent
    (`--teacher dense/ --student pruned/`), or train a small architecture from a big one
    (`--teacher resnet18-art/ --student lenet5`).
    """
    from compress.cli.progress import RichHooks
    from compress.distillation.distill import DistillConfig
    from compress.stages.common import ModelRef
    from compress.stages.distill import run_distill
    from compress.training.fit import TrainConfig

    kd = DistillConfig(
        temperature=temperature,
        alpha=alpha,
        epochs=epochs,
        lr=lr,
        features=feature_distill,
        feature_weight=feature_weight,
    )
    cfg = TrainConfig(
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        schedule=schedule,
        seed=seed,
        device=device,
        amp=amp,
        channels_last=channels_last,
    )
    t_ref = ModelRef(teacher, weights=teacher_weights, trust_pickle=trust_pickle)
    s_ref = o.model_ref(
        student, student_weights, num_classes, in_channels, input_size, trust_pickle
    )
    data = o.data_config(
        dataset, data_dir, batch_size=batch_size, seed=seed, limit=limit, augment=augment
    )
    with RichHooks() as hooks:
        r = run_distill(
            t_ref, s_ref, kd, data, out, train_cfg=cfg, overwrite=overwrite, hooks=hooks
        ).to_dict()
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
    write_json(json_out, r)


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)
