"""`compress quantize`: int8 (static, dynamic, QAT) or fp16 ONNX, accuracy-gated and measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import console, pct, write_json

if TYPE_CHECKING:  # imports torch; loaded when the command runs
    from compress.quantization.quantize import QuantizeConfig


@dataclass(frozen=True)
class QuantizeOptions(o.OptionGroup):
    """How to quantize: method, calibration, int8 settings, accuracy budget, QAT training."""

    method: Annotated[
        str, typer.Option(help="ptq-static (default), ptq-dynamic (Linear only), qat or fp16.")
    ] = "ptq-static"
    samples: Annotated[
        int, typer.Option(help="Calibration images (seeded subset of the validation split).")
    ] = 300
    calibration: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax"
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="Per-channel weight scales.")
    ] = True
    fmt: Annotated[str, typer.Option("--format", help="qdq (default) or qoperator.")] = "qdq"
    activation_type: Annotated[str, typer.Option(help="auto (from the CPU), uint8 or int8.")] = (
        "auto"
    )
    weight_type: Annotated[str, typer.Option(help="auto (from the CPU), int8 or uint8.")] = "auto"
    reduce_range: Annotated[
        str, typer.Option(help="auto (from the CPU), on or off (7-bit weights).")
    ] = "auto"
    tune: Annotated[
        bool,
        typer.Option(
            help="Try the candidate int8 settings, measure validation accuracy and latency, "
            "keep the fastest within --max-drop."
        ),
    ] = False
    max_drop: Annotated[
        float, typer.Option(help="Accuracy budget: points of validation top-1 int8 may lose.")
    ] = 1.0
    max_fallback: Annotated[
        int, typer.Option(help="Most nodes kept in float to meet --max-drop (0: no fallback).")
    ] = 8
    keep_float: Annotated[
        list[str] | None,
        typer.Option(help="Keep this ONNX node in float (repeatable), e.g. /conv1/Conv."),
    ] = None
    mixed: Annotated[
        bool, typer.Option(help="fp16: keep sensitive nodes fp32 until the parity gate holds.")
    ] = False
    epochs: Annotated[int, typer.Option(help="QAT fine-tuning epochs.")] = 2
    lr: Annotated[float, typer.Option(help="QAT peak learning rate.")] = 1e-4
    amp: Annotated[str, typer.Option(help="QAT training precision (off, bf16, auto).")] = "off"
    eval_samples: Annotated[
        int | None, typer.Option(help="Cap on validation/test images per accuracy check.")
    ] = None
    latency: Annotated[
        bool, typer.Option("--latency/--no-latency", help="Measure fp32 vs quantized latency.")
    ] = True
    weight_bits: Annotated[
        str,
        typer.Option(
            "--weight-bits",
            "--bits",
            help="8 (int8), 4 (int4 weights: Linear as MatMulNBits, Conv dequantized at run "
            "time) or auto (fp32/int8/int4 per layer by measured sensitivity under --max-drop).",
        ),
    ] = "8"
    layer_bits: Annotated[
        list[str] | None,
        typer.Option(
            help="Bit width of one layer, NODE=4|8|32 (repeatable), e.g. /fc1/Gemm=4. Layers "
            "trained on the int4 grid (`compress distill --int4-layers`) default to 4."
        ),
    ] = None
    target_size: Annotated[
        float | None, typer.Option(help="--bits auto: stop lowering once the file fits (KB).")
    ] = None
    int4_opset: Annotated[
        int, typer.Option(help="Opset of int4 models (standard INT4 needs >= 21).")
    ] = 21
    block_size: Annotated[int, typer.Option(help="MatMulNBits block size along K.")] = 32

    def config(self, seed: int) -> QuantizeConfig:
        """The library's QuantizeConfig (validated there)."""
        from compress.quantization.quantize import QuantizeConfig

        return QuantizeConfig(
            method=self.method,
            samples=self.samples,
            calibration=self.calibration,
            per_channel=self.per_channel,
            format=self.fmt,
            activation_type=self.activation_type,
            weight_type=self.weight_type,
            reduce_range=self.reduce_range,
            tune=self.tune,
            max_drop=self.max_drop,
            max_fallback=self.max_fallback,
            keep_float=tuple(self.keep_float or ()),
            mixed=self.mixed,
            epochs=self.epochs,
            lr=self.lr,
            amp=self.amp,
            eval_samples=self.eval_samples,
            latency=self.latency,
            seed=seed,
            weight_bits=self.weight_bits,
            layer_bits=_layer_bits(self.layer_bits or []),
            target_size_kb=self.target_size,
            int4_opset=self.int4_opset,
            block_size=self.block_size,
        )


def quantize(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: QuantizeOptions = QuantizeOptions(),
    limit: o.LimitOpt = None,
    seed: o.SeedOpt = 0,
    mo: o.ModelOptions = o.ModelOptions(),
    data: o.DataOptions = o.DataOptions(),
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
    from compress.cli.progress import RichHooks
    from compress.stages.quantize import run_quantize

    dc = data.config(seed=seed, limit=limit)
    with RichHooks() as hooks:
        summary = run_quantize(
            mo.of(model), how.config(seed), dc, out, overwrite=overwrite, hooks=hooks
        ).to_dict()
    _print(summary)
    write_json(json_out, summary)


def _layer_bits(items: list[str]) -> dict[str, int]:
    """NODE=BITS pairs from --layer-bits; a malformed one is a usage error (one line)."""
    from compress.models.errors import UsageError

    out: dict[str, int] = {}
    for item in items:
        name, sep, bits = item.rpartition("=")
        if not sep or not name or not bits.strip().isdigit():
            raise UsageError(f"--layer-bits takes NODE=BITS (e.g. /fc1/Gemm=4), got {item!r}")
        out[name] = int(bits)
    return out


def _print_layers(layers: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="per layer")
    for col in ("layer", "op", "weight bits", "computes in"):
        table.add_column(col)
    for r in layers:
        table.add_row(r["layer"], r["op"], str(r["weight_bits"]), r["compute"])
    console.print(table)


def _print(s: dict[str, Any]) -> None:
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
    for note in s["notes"]:
        console.print(("[yellow]" if "NOT" in note else "") + note)
    console.print(f"artifact: {s['out']}")


def register(app: typer.Typer) -> None:
    app.command("quantize")(o.with_groups(quantize))
