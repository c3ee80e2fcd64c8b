"""`compress quantize`: int8 (static, dynamic, QAT) or fp16 ONNX, accuracy-gated and measured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compress.cli import options as o
from compress.cli.output import console, pct, write_json

if TYPE_CHECKING:  # imports torch; loaded when the command runs
    from compress.models.data.splits import DataConfig
    from compress.models.notes import Note
    from compress.quantization.context import QuantizeConfig


@o.verb("quantize")
def quantize(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: QuantizeConfig = o.options_from(o.QUANTIZE, take=("seed",)),
    data: DataConfig = o.options_from(o.DATA, only=(*o.WHERE, "limit", "seed")),
    mo: o.ModelOptions = o.ModelOptions(),
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
    _print(summary.to_dict(), summary.result.notes)
    write_json(json_out, summary.to_dict())


def _print_layers(layers: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="per layer")
    for col in ("layer", "op", "weight bits", "computes in"):
        table.add_column(col)
    for r in layers:
        table.add_row(r["layer"], r["op"], str(r["weight_bits"]), r["compute"])
    console.print(table)


def _print(s: dict[str, Any], notes: list[Note]) -> None:
    from rich.table import Table

    st = s["settings"]
    label = st.get("label") or st.get("format")
    console.print(f"[green]{s['method']}[/] -> {s['precision']} ({label}): {s['reason']}")
    table = Table(title=f"fp32 vs {s['precision']}")
    table.add_column("")
    table.add_column("fp32", justify="right")
    table.add_column(s["precision"], justify="right")
    f, q = s["fp32"], s["quantized"]
    table.add_row("size", f"{f['bytes'] / 1024:.1f} KiB", f"{q['bytes'] / 1024:.1f} KiB")
    table.add_row("val top-1", pct(f.get("val_top1")), pct(q.get("val_top1")))
    if s.get("test"):
        t = s["test"]
        table.add_row("test top-1", pct(t["fp32"]["top1"]), pct(t["quantized"]["top1"]))
    for b, ms in (f.get("latency_ms") or {}).items():
        table.add_row(f"latency b{b}", f"{ms:.3f} ms", f"{q['latency_ms'][b]:.3f} ms")
    console.print(table)
    console.print(f"size ratio {s['size_ratio']:.3f}x")
    if s.get("layers"):
        _print_layers(s["layers"])
    if s["fallback_nodes"]:
        console.print(f"kept in float: {', '.join(s['fallback_nodes'])}")
    for note in notes:
        console.print(("" if note.severity == "info" else "[yellow]") + note.text)
    console.print(f"artifact: {s['out']}")
