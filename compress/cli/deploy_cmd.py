"""`compress deploy`: measure an artifact on every runtime x precision x threads, deploy the fastest."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import console, err_console, pct, write_json
from compress.models.errors import UsageError

RuntimeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--runtime",
        "-r",
        help="Only these runtimes (repeatable): torch, torch-cuda, torch-compile, ort-cpu, "
        "ort-cuda, ort-trt, openvino, openvino-gpu, openvino-npu. Default: every one; those "
        "this machine can't run are listed as skipped, with the reason.",
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(help="A runtime not to try (repeatable), e.g. torch-compile."),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="Comma-separated precisions to try: fp32, bf16, fp16, int8 (an int8 or fp16 "
        "artifact runs only as itself)."
    ),
]
ThreadsOpt = Annotated[
    str | None,
    typer.Option(help="Comma-separated thread counts (default: 1 and all physical cores)."),
]
BatchSizesOpt = Annotated[
    str, typer.Option(help="Comma-separated batch sizes; the first decides the fastest.")
]
MaxDropOpt = Annotated[
    float, typer.Option(help="Accuracy gate: points of validation top-1 a candidate may lose.")
]
SecondsOpt = Annotated[
    float, typer.Option(help="Timing budget per candidate and batch size (all rounds).")
]
RoundsOpt = Annotated[int, typer.Option(help="Candidates take turns in this many slices.")]
EvalSamplesOpt = Annotated[int | None, typer.Option(help="Cap on validation images per candidate.")]
BaselineOpt = Annotated[
    str | None,
    typer.Option(
        help="The dense parent artifact: measured the same way, and the chosen candidate's "
        "speed-up is given vs its fastest case and vs its onnxruntime fp32 case."
    ),
]
InputSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="Deploy at N x N input (a zoo name is built at N): a PyTorch artifact is "
        "re-targeted when resolution-independent (a too-small N or a fixed-size Linear after "
        "flatten is refused naming the layer); an ONNX artifact only at the size it was "
        "exported at (or any, if its H/W are dynamic). Candidates and --baseline are timed at "
        "N, and predict resizes images to N. At a size other than the one the weights were "
        "trained at, the accuracy gate runs on validation images resized to N against fp32 at "
        "N (a check of runtimes and precisions, not of the model's accuracy, which resizing "
        "changes); --eval-samples bounds its cost.",
    ),
]


def deploy(
    model: o.ModelOpt,
    out: o.OutOpt,
    runtime: RuntimeOpt = None,
    exclude: ExcludeOpt = None,
    precision: PrecisionOpt = "fp32,bf16,fp16,int8",
    threads: ThreadsOpt = None,
    batch_sizes: BatchSizesOpt = "1",
    max_drop: MaxDropOpt = 1.0,
    seconds: SecondsOpt = 1.0,
    rounds: RoundsOpt = 3,
    eval_samples: EvalSamplesOpt = None,
    baseline: BaselineOpt = None,
    input_size: InputSizeOpt = None,
    dataset: o.DatasetOpt = None,
    data_dir: o.DataDirOpt = None,
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Try every runtime x precision x thread count this machine has for an artifact, keep those within --max-drop of its validation top-1, time them in interleaved rounds, and write the fastest to --out (model files + deploy.json).

    Unavailable runtimes and precisions are listed with the reason. If no candidate passes the accuracy gate, nothing is written and the exit code is 5.
    """
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.stages.deploy import DeployConfig
    from compress.stages.deploy import deploy as run_deploy

    cfg = DeployConfig(
        runtimes=tuple(runtime) if runtime else None,
        precisions=_words(precision, "--precision"),
        threads=_ints(threads, "--threads") if threads else None,
        batch_sizes=_ints(batch_sizes, "--batch-sizes"),
        max_drop=max_drop,
        seconds=seconds,
        rounds=rounds,
        eval_samples=eval_samples,
        baseline=baseline,
        exclude=tuple(exclude or ()),
        input_size=input_size,
    )
    ref = ModelRef(model=model)
    data = DataConfig(dataset=dataset, data_dir=data_dir)
    with err_console.status("deploy: measuring candidates") as status:
        result = run_deploy(
            ref, cfg, out, data, overwrite=overwrite, progress=lambda s: status.update(s)
        )
    _print(result.to_dict())
    write_json(json_out, result.to_dict())


def _print(r: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"deploy candidates (gate vs {pct(r['reference_top1'])} {r['reference']})")
    right = ("thr", "val top-1", "drop pt", p50_column(r["candidates"]))
    for col in ("runtime", "asked", "runs in", *right, "status"):
        table.add_column(col, justify="right" if col in right else "left")
    skipped = [c for c in r["candidates"] if c["status"] == "skipped"]
    for c in r["candidates"]:
        if c["status"] == "skipped":
            continue
        first = next(iter((c.get("latency") or {}).values()), None)
        drop = c.get("drop_pts")
        status = c["status"] + (f": {c['reason']}" if c.get("reason") else "")
        table.add_row(
            c["runtime"],
            c["precision"],
            c.get("effective_precision") or "-",
            str(c.get("threads") or "-"),
            pct(c.get("val_top1")),
            "-" if drop is None else f"{drop:.2f}",
            "-" if first is None else f"{first['p50_ms']:.3f}",
            f"[green]{status}[/]" if c["status"] == "chosen" else status,
        )
    console.print(table)
    for c in skipped:
        console.print(f"[dim]skipped {c['runtime']} {c['precision']}: {c['reason']}[/]")
    for key in ("vs_fastest_dense", "vs_ort_fp32"):
        sp = (r.get("speedup") or {}).get(key)
        if sp:
            console.print(speedup_line(sp, r["speedup"]), highlight=False)
    ch = r["chosen"]
    console.print(
        f"deployed on [bold]{ch['runtime']}[/] {ch['precision']} with {ch['threads']} "
        f"thread(s) to {r['out']}"
    )


def p50_column(candidates: list[dict[str, Any]]) -> str:
    """`p50 ms b1`: the table shows the first batch size, the one that decides."""
    timed = [c["latency"] for c in candidates if c.get("latency")]
    return f"p50 ms b{next(iter(timed[0]))}" if timed else "p50 ms"


def speedup_line(sp: dict[str, Any], speedup: dict[str, Any]) -> str:
    """`2.10x vs ... (ort-cpu/fp32/1t: 0.042 -> 0.020 ms p50 at batch 1)`; below 1x it says
    in so many words that the deployed model is slower than its baseline."""
    line = (
        f"{sp['speedup']:.2f}x {sp['label']} ({sp['baseline']}: {sp['baseline_p50_ms']:.3f} -> "
        f"{speedup['p50_ms']:.3f} ms p50 at batch {speedup['batch_size']})"
    )
    if sp["speedup"] < 1:
        line = f"[yellow]{line}: SLOWER than the baseline here[/]"
    return line


def _words(text: str, name: str) -> tuple[str, ...]:
    words = tuple(w for w in text.replace(" ", "").split(",") if w)
    if not words:
        raise UsageError(f"{name} is empty")
    return words


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in _words(text, name))
    except ValueError:
        raise UsageError(f"{name} must be comma-separated integers, got {text!r}") from None


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
