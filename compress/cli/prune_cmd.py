"""`compress prune`, `compress sensitivity` and `compress factorize` (Linear layers as truncated
SVDs, fine-tuned with KD from the parent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, fresh_out_dir, pct, table, write_json

if TYPE_CHECKING:
    from compress.factorization.svd import FactorizeConfig
    from compress.models.data.splits import DataConfig
    from compress.pruning.config import PruneConfig
    from compress.pruning.sensitivity import SensitivityConfig
    from compress.training.config import TrainConfig


# Rows of the before/after table: label -> (key in before/after, key in speedup).
SIZES = {"params": ("params", "params"), "MACs": ("macs", "macs")}
SIZES |= {"file bytes": ("file_bytes", "file")}
TIMES = {"onnxruntime ms": ("ort_ms", "ort"), "torch eager ms": ("torch_ms", "torch")}


@o.verb("prune")
def prune(
    model: o.ModelOpt,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Output artifact directory. Default: a new runs/<model>-pruned (-2, -3, ... "
            "when taken; never overwritten).",
            show_default=False,
        ),
    ] = None,
    how: PruneConfig = o.options_from(o.PRUNE, take=("seed",)),
    data: DataConfig = o.options_from(o.DATA, only=(*o.WHERE, "batch_size", "seed", "limit")),
    mo: o.ModelOptions = o.options_from(o.MODEL),
    dev: TrainConfig = o.options_from(o.TRAIN, only=("device", "amp")),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Remove channels for real (torch-pruning), fine-tune, and write a smaller, faster artifact.

    Give one target: --ratio, --target-macs, --target-params, --target-latency-ms or
    --from-sensitivity; with none, --target-macs 2x (half the MACs per image) is used and said.
    The card records params, MACs, file size, latency and accuracy before and after. A zoo model
    needs trained weights (or --weights random for latency studies).
    """
    from compress import api
    from compress.cli.progress import RichHooks

    keys = {"device": dev.device, "amp": dev.amp}
    if out is None:
        out = str(fresh_out_dir(model, "pruned"))
        console.print(f"no --out given: writing {out}")
    ref = mo.of(model)
    with RichHooks() as hooks:
        summary = api.prune(ref, out, how, data, overwrite=overwrite, finetune=keys, hooks=hooks)
        s = summary.to_dict()
    _print_summary(s)
    write_json(json_out, s)


def _print_summary(s: dict) -> None:
    from compress.export.bench.report import fmt_num

    b, a, x = s["before"], s["after"], s["speedup"]
    rows = [[n, f"{b[k]:,}", f"{a[k]:,}", fmt_num(x[r], "{:.2f}x")] for n, (k, r) in SIZES.items()]
    for n, (k, r) in TIMES.items():
        lb, la = b.get("latency", {}).get(k), a.get("latency", {}).get(k)
        if lb is not None and la is not None:
            rows.append([n, f"{lb:.3f}", f"{la:.3f}", fmt_num(x[r], "{:.2f}x")])
    for split in ("val_top1", "test_top1"):
        mb, ma = b.get("metrics", {}).get(split), a.get("metrics", {}).get(split)
        if mb is not None or ma is not None:
            rows.append([split.replace("_", " "), pct(mb), pct(ma), ""])
    title = f"pruned {s['model']} -> {s['out']}" + (" (untrained)" if s["untrained"] else "")
    columns = ("", "before", "after", "ratio")
    console.print(table(title, columns, rows, right=columns))
    ach = s.get("achieved") or {}  # requested vs achieved, in one line
    if ach.get("kind") in ("macs", "params"):
        console.print(
            f"asked: {ach['kind']} {ach['asked_factor']}x fewer ({100 * ach['asked']:.1f} % removed); "
            f"achieved {ach['factor']}x ({100 * ach['removed']:.1f} %), tolerance "
            f"{100 * ach['tolerance']:.0f} pt"
        )
    elif ach.get("kind") == "layers" and ach["layers"]:
        dev = max(abs(lay["removed"] - lay["asked"]) for lay in ach["layers"])
        console.print(
            f"asked vs removed per layer: {len(ach['layers'])} layers, largest gap "
            f"{100 * dev:.1f} pt (tolerance {100 * ach['tolerance']:.0f} pt)"
        )
    if s.get("finetune", {}).get("said"):
        console.print(f"fine-tuning: {s['finetune']['said']}")
    console.print(
        f"MACs count convolutions and matrix products; not counted: {', '.join(a['uncounted_ops']) or 'nothing'}"
    )
    for note in s["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    console.print(
        f"pruning took {s['prune_seconds']:.1f} s, fine-tuning {s['finetune_seconds']:.0f} s"
    )


@o.verb("sensitivity")
def sensitivity(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: SensitivityConfig = o.options_from(o.SENSITIVITY),
    mo: o.ModelOptions = o.options_from(o.MODEL),
    data: DataConfig = o.options_from(o.DATA, only=o.WHERE),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Prune each layer alone at a few ratios: val top-1, MACs and latency saved (md, json, png).

    Feed the result to `compress prune --from-sensitivity OUT --max-drop 1`.
    """
    from compress import api

    r = api.sensitivity(mo.of(model), out, how, data, overwrite=overwrite)
    console.print(f"{len(r.layers)} layers analysed; report: {out}/sensitivity.md (+ .json, .png)")
    write_json(json_out, {"out": str(out), **r.to_dict()})


@o.verb("factorize")
def factorize(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: FactorizeConfig = o.options_from(o.FACTORIZE, take=("seed",)),
    mo: o.ModelOptions = o.options_from(o.MODEL),
    data: DataConfig = o.options_from(o.DATA, only=(*o.WHERE, "seed", "limit")),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Factorize Linear layers (W ~ B A, truncated SVD) and fine-tune with KD from the parent.

    A rank pays only below the break-even mn/(m+n) of an m x n layer; larger ranks are refused.
    The artifact reloads without pickle (the card records the ranks) and exports to ONNX.
    """
    from compress import api
    from compress.cli.progress import RichHooks

    with RichHooks() as hooks:
        r = api.factorize(mo.of(model), out, how, data, overwrite=overwrite, hooks=hooks)
    for layer in r.layers:
        console.print(
            f"{layer['layer']}: {layer['in_features']} -> {layer['out_features']} at rank "
            f"{layer['rank']} (break-even {layer['break_even']}), {layer['params_before']:,} -> "
            f"{layer['params_after']:,} weights, {100 * layer['energy_kept']:.1f}% energy kept"
        )
    console.print(
        f"[green]factorized[/] {r.params_before:,} -> {r.params:,} params; test top-1 "
        f"parent {pct(r.parent['test']['top1'])}, after SVD {pct(r.after_svd['test']['top1'])}, "
        f"after KD {pct(r.metrics['test']['top1'])}"
    )
    console.print(f"artifact: {r.out}")
    write_json(json_out, r.to_dict())
