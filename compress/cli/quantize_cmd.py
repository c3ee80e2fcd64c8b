"""`compress quantize`: int8 (static, dynamic, QAT) or fp16 ONNX, accuracy-gated and measured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compress.cli import options as o
from compress.cli.output import console, pct, table, write_json

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


def _print(s: dict[str, Any], notes: list[Note]) -> None:
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
    for note in notes:
        console.print(("" if note.severity == "info" else "[yellow]") + note.text)
    console.print(f"artifact: {s['out']}")
