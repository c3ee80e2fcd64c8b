"""`compress train` and `compress eval`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, pct, write_json

if TYPE_CHECKING:
    from compress.models.data.splits import DataConfig
    from compress.training.config import TrainConfig


def train(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: TrainConfig = o.options_from(o.TRAIN, take=("seed",)),
    data: DataConfig = o.options_from(o.DATA, only=o.TRAIN_DATA),
    mo: o.ModelOptions = o.ModelOptions(),
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
        summary = api.train(
            mo.of(model), out, how, data, overwrite=overwrite, hooks=hooks
        ).to_dict()
    m = summary["metrics"]
    console.print(
        f"[green]trained[/] {model} ({summary['params']:,} params, "
        f"{summary['precision']}) in {summary['seconds']:.0f} s: "
        f"val top-1 {pct(m['val']['top1'])}, test top-1 {pct(m['test']['top1'])}"
    )
    console.print(f"artifact: {out}")
    write_json(json_out, summary)


def evaluate(
    model: o.ModelOpt,
    split: Annotated[str, typer.Option(help="test (default), val or train.")] = "test",
    limit: Annotated[int | None, typer.Option(help="Evaluate at most N samples.")] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            "-r",
            help="Where to run it: torch, torch-cuda, torch-compile, ort-cpu, ort-cuda, ort-trt, "
            "openvino, openvino-gpu or openvino-npu (default: onnxruntime for ONNX artifacts, "
            "PyTorch otherwise). Accuracy is measured there.",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="fp32, bf16 (native-bf16 CPUs, GPUs), fp16 (GPU) or int8 (int8 artifacts)."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Runtime threads (default: all).")] = None,
    mo: o.ModelOptions = o.ModelOptions(),
    data: DataConfig = o.options_from(o.DATA, only=o.WHERE),
    json_out: o.JsonOpt = None,
) -> None:
    """Evaluate a model (PyTorch or ONNX artifact): top-1, top-5, loss, per-class, confusion."""
    from rich.table import Table

    from compress import api

    r = api.evaluate(
        mo.of(model),
        data,
        split,
        limit,
        runtime=runtime,
        precision=precision,
        threads=threads,
    ).to_dict()
    table = Table(title=f"{model} on {r['dataset']['dataset']} {split} ({r['samples']} images)")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for name, acc in zip(r["class_names"], r["per_class"], strict=False):
        table.add_row(name, pct(acc))
    console.print(table)
    console.print(f"top-1 {pct(r['top1'])}  top-5 {pct(r['top5'])}  loss {r['loss']:.4f}")
    ran = r.get("effective_precision", r.get("precision"))
    console.print(f"ran on {r['runtime']} ({ran})", highlight=False)
    write_json(json_out, r)


def register(app: typer.Typer) -> None:
    app.command("train")(o.with_groups(train))
    app.command("eval")(o.with_groups(evaluate))
