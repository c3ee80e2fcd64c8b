"""`compress export`, `compress bench` and `compress doctor`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import console, err_console, write_json
from compress.models.errors import UsageError

if TYPE_CHECKING:  # imports torch; loaded when the command runs
    from compress.export.bench.measure import BenchConfig

RuntimeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--runtime",
        "-r",
        help="torch, torch-cuda, torch-compile, ort-cpu, ort-cuda, ort-trt, openvino, "
        "openvino-gpu or openvino-npu; repeat for several (default: torch and ort-cpu).",
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="Intra-op threads for every runtime (default: physical cores).")
]


def export(
    model: o.ModelOpt,
    out: o.OutOpt,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch/--static", help="Dynamic or fixed (1) batch size.")
    ] = True,
    exporter: Annotated[
        str, typer.Option(help="torchscript (fast, default) or dynamo (torch.export based).")
    ] = "torchscript",
    precision: Annotated[str, typer.Option(help="fp32 or fp16 (fp16 weights, fp32 I/O).")] = "fp32",
    optimize: Annotated[
        str,
        typer.Option(
            help="Offline onnxruntime graph optimization: none, basic, extended (ORT-only ops) "
            "or all (CPU-specific layouts). Parity is re-checked after it."
        ),
    ] = "none",
    parity_samples: Annotated[
        int, typer.Option(help="Inputs for the parity gate (validation images if trained).")
    ] = 64,
    mo: o.RunModelOptions = o.RunModelOptions(),
    data: o.DataOptions = o.DataOptions(),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Export a PyTorch model to an ONNX artifact (model.onnx + card.json), parity-gated.

    The ONNX file passes onnx.checker and shape inference, then must match the PyTorch model in
    onnxruntime (fp32: max abs diff <= 1e-4, rtol 1e-3, same top-1; fp16: <= 1e-2 and cosine
    >= 0.999) on real validation images (random inputs if untrained). A failed gate keeps the
    artifact, marks its card, and exits with code 5. With --input-size N the file, its parity
    gate (images resized to N) and its card are at N x N; bench and deploy then run it there.
    """
    from compress.export.onnx.convert import ExportConfig
    from compress.stages.export import run_export

    cfg = ExportConfig(
        opset=opset,
        dynamic_batch=dynamic_batch,
        exporter=exporter,
        precision=precision,
        optimize=optimize,
        parity_samples=parity_samples,
        input_size=mo.input_size,
    )
    with err_console.status(f"exporting {model} ({exporter}, opset {opset})"):
        summary = run_export(mo.of(model), cfg, data.config(), out, overwrite=overwrite).to_dict()
    e = summary["export"]
    console.print(
        f"[green]exported[/] {model} -> {out}/model.onnx ({e['bytes'] / 1e6:.2f} MB, "
        f"opset {e['opset']}, {e['precision']}, {e['exporter']}, {e['seconds']:.1f} s"
        + (f", optimized: {e['optimized']}" if e["optimized"] != "none" else "")
        + ")"
    )
    console.print(summary["parity_summary"], highlight=False)
    write_json(json_out, summary)


BenchModels = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        help="Zoo name, PyTorch or ONNX artifact, or .onnx file; repeat to compare "
        "(speed-ups are relative to the first).",
    ),
]
Rounds = Annotated[
    int,
    typer.Option(
        help="Split each case's time into N slices taken in turns with the other cases, "
        "so load from other processes hits every model alike (steadier speed-ups).",
    ),
]


@dataclass(frozen=True)
class BenchOptions(o.OptionGroup):
    """What to measure and how long: runtimes, batch sizes, threads, timing budget."""

    runtime: RuntimeOpt = None
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32"
    threads: ThreadsOpt = None
    warmup: Annotated[int, typer.Option(help="Untimed runs before each case.")] = 2
    iters: Annotated[int | None, typer.Option(help="Timed runs per case.")] = None
    seconds: Annotated[
        float | None, typer.Option(help="Time per case (default 3 s, at least 5 runs).")
    ] = None
    rounds: Rounds = 1
    opset: Annotated[int, typer.Option(help="Opset for exporting PyTorch models.")] = 17
    precision: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated precisions to run each model at: fp32, bf16 (CPUs with native "
            "bf16, GPUs), fp16 (GPU), int8 (int8 artifacts). Pairs this machine can't run are "
            "skipped with the reason. Quantized artifacts (int8, int4, mixed) always run at "
            "their own. Default: each model at its own precision.",
        ),
    ] = None

    def config(self, input_size: int | None = None) -> BenchConfig:
        """The library's BenchConfig (validated there); `input_size` is --input-size."""
        from compress.export.bench.measure import BenchConfig
        from compress.export.runtimes.precision import parse_precisions

        return BenchConfig(
            runtimes=tuple(self.runtime or ("torch", "ort-cpu")),
            batch_sizes=_batch_sizes(self.batch_sizes),
            threads=self.threads,
            warmup=self.warmup,
            iters=self.iters,
            seconds=self.seconds,
            opset=self.opset,
            rounds=self.rounds,
            precisions=parse_precisions(self.precision),
            input_size=input_size,
        )


def bench(
    model: BenchModels,
    how: BenchOptions = BenchOptions(),
    mo: o.RunModelOptions = o.RunModelOptions(),
    json_out: o.JsonOpt = None,
    csv_out: Annotated[str | None, typer.Option("--csv", help="Write a CSV here.")] = None,
    md_out: Annotated[str | None, typer.Option("--md", help="Write a Markdown table here.")] = None,
    plot: Annotated[
        str | None,
        typer.Option(help="PNG: latency vs batch size (+ <name>-accuracy.png when known)."),
    ] = None,
) -> None:
    """Measure latency (p50/p90/p99), throughput, memory and size per model, runtime and batch.

    Inputs are synthetic (random, the model's shape): the numbers are speed, not accuracy.
    PyTorch models also run on onnxruntime after an in-memory export. --input-size N times
    every model at N x N (e.g. a dense parent and its pruned children trained at 28, at 224);
    an ONNX artifact exported with `compress export --input-size N` runs at N without it.
    """
    from compress.export.bench.report import write_reports
    from compress.models.artifacts.resolve import zoo_weights
    from compress.stages.bench import run_bench

    cfg = how.config(mo.input_size)
    refs = [mo.ref(m, zoo_weights(m, mo.weights)) for m in model]
    with _BenchProgress() as progress:
        report = run_bench(refs, cfg, progress=progress)
    _print_bench(report)
    for path in write_reports(
        report, json_path=_file(json_out), csv_path=csv_out, md_path=md_out, plot_path=plot
    ):
        console.print(f"wrote {path}")
    if json_out == "-":
        write_json("-", report.to_dict())


def _print_bench(report: Any) -> None:
    """The table (a narrow terminal gets the columns that matter most), machine and notes."""
    from compress.export.bench.report import environment_line, terminal_table
    from compress.export.bench.results import INPUT_NOTE

    console.print(terminal_table(report, console.width))
    console.print(f"inputs: {INPUT_NOTE}", highlight=False)
    console.print(f"machine: {environment_line(report)}", highlight=False)
    for note in report.notes:
        style = "yellow" if ("FAILED" in note or "fell back" in note or "asked" in note) else "dim"
        console.print(f"[{style}]note:[/] {note}", highlight=False)


def doctor(
    model: o.ModelOpt,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            "-r",
            help="The onnxruntime session whose graph is diagnosed: ort-cpu, ort-cuda or "
            "ort-trt. (--rank also times the ONNX runtimes available here: ort-*, openvino, "
            "openvino-gpu, openvino-npu.)",
        ),
    ] = "ort-cpu",
    threads: ThreadsOpt = None,
    mo: o.ModelOptions = o.ModelOptions(),
    json_out: o.JsonOpt = None,
    rank: Annotated[
        bool,
        typer.Option(
            help="Also time every ONNX runtime x precision (fp32, bf16, int8, ...) this machine "
            "has (a few seconds) and name the fastest, and why.",
        ),
    ] = True,
) -> None:
    """Explain why a model is or isn't fast here: CPU ISA vs int8, Q/DQ fusion, ConvInteger,
    fp32 islands, EP assignment, channel widths, dynamic shapes; each with a suggestion."""
    from compress.stages.bench import run_doctor

    with err_console.status(f"examining {model} on {runtime}"):
        d = run_doctor(mo.of(model), runtime, threads, rank=rank)
    console.print(f"[bold]{d.model}[/] on {d.runtime} ({d.threads} threads, {d.cpu})")
    marks = {"ok": "[green]ok[/]", "info": "[cyan]info[/]", "warning": "[yellow]warn[/]"}
    for f in d.findings:
        mark = marks.get(f.severity, "[bold red]PROBLEM[/]")
        console.print(f"{mark} {f.title}", highlight=False)
        if f.detail:
            console.print(f"     [dim]{f.detail}[/]", highlight=False)
        if f.suggestion:
            console.print(f"     -> {f.suggestion}", highlight=False)
    write_json(json_out, d.to_dict())


class _BenchProgress:
    """A rich progress bar driven by the benchmark's (done, total, what) callback."""

    def __enter__(self) -> _BenchProgress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("benchmark", total=None)
        return self

    def __call__(self, done: int, total: int, what: str) -> None:
        self.progress.update(self.task, completed=done, total=total, description=what)

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise UsageError(f"--batch-sizes must be comma-separated integers, got {text!r}") from None
    if not sizes:
        raise UsageError("--batch-sizes is empty")
    return sizes


def _file(path: str | None) -> str | None:
    return None if path in (None, "-") else path


def register(app: typer.Typer) -> None:
    app.command("export")(o.with_groups(export))
    app.command("bench")(o.with_groups(bench))
    app.command("doctor")(o.with_groups(doctor))
