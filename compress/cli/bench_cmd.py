"""The ONNX verbs: `compress export`, `compress quantize`, `compress bench` and `compress doctor`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, err_console, pct, table, write_json

if TYPE_CHECKING:
    from compress.export.bench.measure import BenchConfig
    from compress.export.doctor.diagnose import DoctorConfig
    from compress.export.onnx.convert import ExportConfig
    from compress.models.data.splits import DataConfig
    from compress.quantization.context import QuantizeConfig


@o.verb("export")
def export(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: ExportConfig = o.options_from(o.EXPORT, take=("input_size",)),
    mo: o.RunModelOptions = o.options_from(o.RUN_MODEL),
    data: DataConfig = o.options_from(o.DATA, only=o.WHERE),
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
    from compress import api

    with err_console.status(f"exporting {model} ({how.exporter}, opset {how.opset})"):
        summary = api.export_onnx(mo.of(model), out, how, data, overwrite=overwrite).to_dict()
    e = summary["export"]
    console.print(
        f"[green]exported[/] {model} -> {out}/model.onnx ({e['bytes'] / 1e6:.2f} MB, "
        f"opset {e['opset']}, {e['precision']}, {e['exporter']}, {e['seconds']:.1f} s"
        + (f", optimized: {e['optimized']}" if e["optimized"] != "none" else "")
        + ")"
    )
    console.print(summary["parity_summary"], highlight=False)
    write_json(json_out, summary)


@o.verb("bench")
def bench(
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            help="Zoo name, PyTorch or ONNX artifact, or .onnx file; repeat to compare "
            "(speed-ups are relative to the first).",
        ),
    ],
    how: BenchConfig = o.options_from(o.BENCH, take=("input_size",)),
    mo: o.RunModelOptions = o.options_from(o.RUN_MODEL),
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
    from compress import api
    from compress.cli.progress import BenchBar
    from compress.export.bench.report import environment_line, terminal_table, write_reports
    from compress.export.bench.results import INPUT_NOTE
    from compress.models.artifacts.resolve import zoo_weights

    refs = [mo.ref(m, zoo_weights(m, mo.weights)) for m in model]
    with BenchBar() as progress:
        report = api.bench(refs, how, progress=progress)
    console.print(terminal_table(report, console.width))
    console.print(f"inputs: {INPUT_NOTE}", highlight=False)
    console.print(f"machine: {environment_line(report)}", highlight=False)
    for note in report.notes:
        style = "dim" if note.severity == "info" else "yellow"
        console.print(f"[{style}]note:[/] {note.text}", highlight=False)
    json_file = None if json_out == "-" else json_out  # `-`: printed below
    for path in write_reports(
        report, json_path=json_file, csv_path=csv_out, md_path=md_out, plot_path=plot
    ):
        console.print(f"wrote {path}")
    if json_out == "-":
        write_json("-", report.to_dict())


@o.verb("doctor")
def doctor(
    model: o.ModelOpt,
    how: DoctorConfig = o.options_from(o.DOCTOR, take=("rank",)),
    mo: o.ModelOptions = o.options_from(o.MODEL),
    json_out: o.JsonOpt = None,
    _rank: DoctorConfig = o.options_from(o.DOCTOR, only=("rank",), rank=True),  # --rank last
) -> None:
    """Explain why a model is or isn't fast here: CPU ISA vs int8, Q/DQ fusion, ConvInteger,
    fp32 islands, EP assignment, channel widths, dynamic shapes; each with a suggestion."""
    from compress import api

    with err_console.status(f"examining {model} on {how.runtime}"):
        d = api.doctor(mo.of(model), how)
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


@o.verb("quantize")
def quantize(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: QuantizeConfig = o.options_from(o.QUANTIZE, take=("seed",)),
    data: DataConfig = o.options_from(o.DATA, only=(*o.WHERE, "limit", "seed")),
    mo: o.ModelOptions = o.options_from(o.MODEL),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Quantize a model for onnxruntime into an ONNX artifact (model.onnx + card.json).

    PyTorch models are exported first (parity-gated); ONNX artifacts are used as is.

    int8 settings follow this CPU: VNNI -> U8S8 full range; AVX2 without VNNI -> reduce_range; ARM dot-product -> S8S8. --tune measures the alternatives.

    If validation top-1 drops more than --max-drop points, the most sensitive nodes stay in float (up to --max-fallback); if the budget still can't be met, the artifact is kept and marked, and the exit code is 5.

    --weight-bits 4 stores int4 weights (Linear layers as MatMulNBits: int4 compute; the others dequantized at run time: smaller, not faster); --bits auto picks fp32/int8/int4 per layer by measured validation drop. The report lists what each layer computes in.

    The report says plainly when the quantized model is not faster than fp32 on this machine.
    """
    from compress import api
    from compress.cli.progress import RichHooks

    with RichHooks() as hooks:
        summary = api.quantize(mo.of(model), out, how, data, overwrite=overwrite, hooks=hooks)
    s = summary.to_dict()
    st, prec, f, q = s["settings"], s["precision"], s["fp32"], s["quantized"]
    label = st.get("label") or st.get("format")
    console.print(f"[green]{s['method']}[/] -> {prec} ({label}): {s['reason']}")
    rows = [["size", f"{f['bytes'] / 1024:.1f} KiB", f"{q['bytes'] / 1024:.1f} KiB"]]
    rows.append(["val top-1", pct(f.get("val_top1")), pct(q.get("val_top1"))])
    if t := s.get("test"):
        rows.append(["test top-1", pct(t["fp32"]["top1"]), pct(t["quantized"]["top1"])])
    for b, ms in (f.get("latency_ms") or {}).items():
        rows.append([f"latency b{b}", f"{ms:.3f} ms", f"{q['latency_ms'][b]:.3f} ms"])
    console.print(table(f"fp32 vs {prec}", ("", "fp32", prec), rows, right=("fp32", prec)))
    console.print(f"size ratio {s['size_ratio']:.3f}x")
    if s.get("layers"):
        rows = [[r["layer"], r["op"], str(r["weight_bits"]), r["compute"]] for r in s["layers"]]
        console.print(table("per layer", ("layer", "op", "weight bits", "computes in"), rows))
    if s["fallback_nodes"]:
        console.print(f"kept in float: {', '.join(s['fallback_nodes'])}")
    for note in summary.result.notes:
        console.print(("" if note.severity == "info" else "[yellow]") + note.text)
    console.print(f"artifact: {s['out']}")
    write_json(json_out, s)
