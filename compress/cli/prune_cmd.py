"""`compress prune` and `compress sensitivity`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, fresh_out_dir, pct, write_json
from compress.pruning.config import BN_RECALIBRATION_IMAGES, FINETUNE_LR, PruneConfig

Ratio = Annotated[
    float | None,
    typer.Option(
        help="Fraction of channels removed from every prunable layer, 0 <= R < 1. Parameters "
        "shrink by about 1-(1-R)^2 (each weight loses input and output channels): 0.5 keeps "
        "~25 % of them."
    ),
]
TargetMacs = Annotated[
    str | None,
    typer.Option(help="MACs per image to reach: absolute (150M, 1.5e8) or a reduction (2x)."),
]
TargetParams = Annotated[
    str | None, typer.Option(help="Parameters to reach: absolute (1M, 2e5) or a reduction (4x).")
]
TargetLatency = Annotated[
    float | None,
    typer.Option(
        help="onnxruntime CPU latency (ms, batch --latency-batch, --latency-threads) to reach; pruned "
        "in rounds, measuring after each, until met (an error says so if it can't be)."
    ),
]
FromSensitivity = Annotated[
    str | None,
    typer.Option(
        help="sensitivity.json (or its directory) from `compress sensitivity`: each layer gets "
        "the largest ratio whose val top-1 drop alone was <= --max-drop."
    ),
]
MaxDrop = Annotated[
    float, typer.Option(help="With --from-sensitivity: allowed drop per layer, in points.")
]
Criterion = Annotated[
    str | None,
    typer.Option(
        help="How channels are ranked: l1, l2, bn-scale, taylor, hessian, lamp, fpgm or random. "
        "Default: taylor (gradients of 4 training batches) for trained weights with known "
        "data, else l2 (the measured choice: BENCHMARKS.md).",
        show_default=False,
    ),
]
GlobalPruning = Annotated[
    bool,
    typer.Option(
        "--global/--local",
        help="Rank channels across all layers (global) or prune each layer by the same ratio.",
    ),
]
FinetuneEpochs = Annotated[
    int | None,
    typer.Option(
        help="Fine-tuning epochs after each step (0: none). Default: 5 epochs after the last "
        "step where the model's training data is known (its card names it, or --dataset is "
        "given), none for untrained weights; the choice is said in one line.",
        show_default=False,
    ),
]
FinalFinetuneEpochs = Annotated[
    int | None,
    typer.Option(help="Fine-tuning epochs after the last step.", show_default=False),
]
Kd = Annotated[
    bool | None,
    typer.Option(
        "--kd/--no-kd",
        help="Fine-tune by distilling from the unpruned model (T=2, alpha=0.5) or with plain "
        "cross-entropy. Default: on whenever there are fine-tuning epochs (measured: "
        "+0.0-0.2 pt at equal learning rate; BENCHMARKS.md).",
        show_default=False,
    ),
]
RoundTo = Annotated[
    int,
    typer.Option(
        help="Align kept channel counts to multiples of this (1 = off) by keeping more, never "
        "fewer; a layer is aligned only where that stays within the ratio tolerance."
    ),
]
RatioTolerance = Annotated[
    float | None,
    typer.Option(
        help="How far each layer's removed fraction (and a MACs/params target's) may fall from "
        "what was asked. Default 0.05, beyond it a warning names the layers; given, it is a "
        "limit: a request the channel counts can't meet is refused.",
        show_default=False,
    ),
]
BnRecalibration = Annotated[
    int,
    typer.Option(
        help="Training images whose forward passes re-estimate BatchNorm statistics after "
        "every cut (adaptive BN, no gradient step; 0 = off)."
    ),
]
Ignore = Annotated[
    list[str] | None,
    typer.Option(help="Layer never pruned (repeatable), on top of the classifier head."),
]
MaxLayerRatio = Annotated[
    float, typer.Option(help="No layer loses more than this fraction of its channels.")
]
LatencyThreads = Annotated[
    int, typer.Option(help="onnxruntime / torch threads of latency measurements.")
]


@dataclass(frozen=True)
class PruneOptions(o.OptionGroup):
    """What to prune and how: the target (one of the first five) and the method."""

    ratio: Ratio = None
    target_macs: TargetMacs = None
    target_params: TargetParams = None
    target_latency_ms: TargetLatency = None
    from_sensitivity: FromSensitivity = None
    max_drop: MaxDrop = 1.0
    criterion: Criterion = None
    global_pruning: GlobalPruning = False
    steps: Annotated[int, typer.Option(help="Prune in N increments.")] = 1
    finetune_epochs: FinetuneEpochs = None
    final_finetune_epochs: FinalFinetuneEpochs = None
    kd: Kd = None
    bn_recalibration: BnRecalibration = BN_RECALIBRATION_IMAGES
    round_to: RoundTo = 8
    ratio_tolerance: RatioTolerance = None
    ignore: Ignore = None
    max_layer_ratio: MaxLayerRatio = 1.0
    isomorphic: Annotated[
        bool,
        typer.Option(
            help="With --global: rank channels only against groups of the same structure "
            "(torch-pruning isomorphic pruning)."
        ),
    ] = False
    finetune_schedule: Annotated[
        str | None,
        typer.Option(
            help="Fine-tuning learning-rate schedule of its own: onecycle, cosine or constant "
            "(default: one-cycle when the parent's recipe is rewound, else cosine)."
        ),
    ] = None
    label_smoothing: Annotated[
        float | None,
        typer.Option(
            help="Label smoothing while fine-tuning / sparse learning (default: the parent's, "
            "else 0).",
            show_default=False,
        ),
    ] = None
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment",
            help="Random flips and crops of the training images while tuning. Default: as the "
            "parent was trained (its card; off when not recorded).",
            show_default=False,
        ),
    ] = None
    sparse_epochs: Annotated[
        int,
        typer.Option(
            help="Epochs of sparse learning before the cut, taken from --final-finetune-epochs "
            "(torch-pruning group regulariser, weight decay off)."
        ),
    ] = 0
    sparse_method: Annotated[
        str, typer.Option(help="group-norm (GroupNormPruner) or growing-reg (GrowingRegPruner).")
    ] = "group-norm"
    sparse_reg: Annotated[
        float, typer.Option(help="Sparse-learning regularisation coefficient (> 0).")
    ] = 5e-4
    latency_batch: Annotated[int, typer.Option(help="Batch size of latency measurements.")] = 1
    latency_threads: LatencyThreads = 2

    def config(self, seed: int) -> PruneConfig:
        """The library's PruneConfig (validated there)."""
        return PruneConfig(
            ratio=self.ratio,
            target_macs=self.target_macs,
            target_params=self.target_params,
            target_latency_ms=self.target_latency_ms,
            from_sensitivity=self.from_sensitivity,
            sensitivity_max_drop=self.max_drop,
            criterion=self.criterion,
            global_pruning=self.global_pruning,
            steps=self.steps,
            finetune_epochs=self.finetune_epochs,
            final_finetune_epochs=self.final_finetune_epochs,
            kd=self.kd,
            bn_recalibration=self.bn_recalibration,
            round_to=self.round_to,
            ratio_tolerance=self.ratio_tolerance,
            ignore=list(self.ignore or []),
            max_layer_ratio=self.max_layer_ratio,
            isomorphic=self.isomorphic,
            finetune_schedule=self.finetune_schedule,
            label_smoothing=self.label_smoothing,
            augment=self.augment,
            sparse_epochs=self.sparse_epochs,
            sparse_method=self.sparse_method,
            sparse_reg=self.sparse_reg,
            latency_batch=self.latency_batch,
            latency_threads=self.latency_threads,
            seed=seed,
        )


PrunedOut = Annotated[
    str | None,
    typer.Option(
        "--out",
        "-o",
        help="Output artifact directory. Default: a new runs/<model>-pruned (-2, -3, ... "
        "when taken; never overwritten).",
        show_default=False,
    ),
]
Latency = Annotated[
    bool, typer.Option(help="Measure latency before/after (onnxruntime and torch eager).")
]
Lr = Annotated[
    float | None,
    typer.Option(
        help="Fine-tuning peak learning rate (default: the parent's, from its card, else "
        f"{FINETUNE_LR:g}).",
        show_default=False,
    ),
]


def prune(
    model: o.ModelOpt,
    out: PrunedOut = None,
    how: PruneOptions = PruneOptions(),
    latency: Latency = True,
    lr: Lr = None,
    batch_size: o.BatchSizeOpt = 128,
    seed: o.SeedOpt = 0,
    limit: o.LimitOpt = None,
    mo: o.ModelOptions = o.ModelOptions(),
    data: o.DataOptions = o.DataOptions(),
    dev: o.DeviceOptions = o.DeviceOptions(),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Remove channels for real (torch-pruning), fine-tune, and write a smaller, faster artifact.

    Give one target: --ratio, --target-macs, --target-params, --target-latency-ms or
    --from-sensitivity; with none, --target-macs 2x (half the MACs per image) is used and said.
    The card records params, MACs, file size, latency and accuracy before and after. A zoo model
    needs trained weights (or --weights random for latency studies).
    """
    from compress.cli.progress import RichHooks
    from compress.stages.prune import run_prune

    cfg = how.config(seed)
    keys = {"device": dev.device, "amp": dev.amp} | ({"lr": lr} if lr is not None else {})
    dc = data.config(batch_size=batch_size, seed=seed, limit=limit)
    if out is None:
        out = str(fresh_out_dir(model, "pruned"))
        console.print(f"no --out given: writing {out}")
    with RichHooks() as hooks:
        summary = run_prune(
            mo.of(model), cfg, dc, out, overwrite=overwrite, finetune=keys, latency=latency,
            hooks=hooks,
        )  # fmt: skip
        s = summary.to_dict()
    _print_summary(s)
    write_json(json_out, s)


def _print_summary(s: dict) -> None:
    from rich.table import Table

    b, a, x = s["before"], s["after"], s["speedup"]
    table = Table(
        title=f"pruned {s['model']} -> {s['out']}" + (" (untrained)" if s["untrained"] else "")
    )
    for col in ("", "before", "after", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("params", f"{b['params']:,}", f"{a['params']:,}", _x(x["params"]))
    table.add_row("MACs", f"{b['macs']:,}", f"{a['macs']:,}", _x(x["macs"]))
    table.add_row("file bytes", f"{b['file_bytes']:,}", f"{a['file_bytes']:,}", _x(x["file"]))
    for key, label in (("ort_ms", "onnxruntime ms"), ("torch_ms", "torch eager ms")):
        lb, la = b.get("latency", {}).get(key), a.get("latency", {}).get(key)
        if lb is not None and la is not None:
            table.add_row(
                label, f"{lb:.3f}", f"{la:.3f}", _x(x["ort" if key == "ort_ms" else "torch"])
            )
    for split in ("val_top1", "test_top1"):
        mb, ma = b.get("metrics", {}).get(split), a.get("metrics", {}).get(split)
        if mb is not None or ma is not None:
            table.add_row(split.replace("_", " "), pct(mb), pct(ma), "")
    console.print(table)
    _print_achieved(s.get("achieved") or {})
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


def _print_achieved(r: dict) -> None:
    """Requested vs achieved, in one line."""
    if r.get("kind") in ("macs", "params"):
        console.print(
            f"asked: {r['kind']} {r['asked_factor']}x fewer ({100 * r['asked']:.1f} % removed); "
            f"achieved {r['factor']}x ({100 * r['removed']:.1f} %), tolerance "
            f"{100 * r['tolerance']:.0f} pt"
        )
    elif r.get("kind") == "layers" and r["layers"]:
        dev = max(abs(x["removed"] - x["asked"]) for x in r["layers"])
        console.print(
            f"asked vs removed per layer: {len(r['layers'])} layers, largest gap "
            f"{100 * dev:.1f} pt (tolerance {100 * r['tolerance']:.0f} pt)"
        )


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def sensitivity(
    model: o.ModelOpt,
    out: o.OutOpt,
    ratios: Annotated[
        str, typer.Option(help="Comma-separated ratios to try per layer.")
    ] = "0.25,0.5,0.75",
    criterion: Annotated[str, typer.Option(help="Channel ranking criterion (see prune).")] = "l2",
    round_to: Annotated[int, typer.Option(help="Channel multiple (1 = off).")] = 8,
    ignore: Annotated[
        list[str] | None, typer.Option(help="Layer to leave out (repeatable).")
    ] = None,
    val_limit: Annotated[
        int, typer.Option(help="Validation images per trial (0 = the whole split).")
    ] = 2000,
    latency: Annotated[bool, typer.Option(help="Time every trial in onnxruntime.")] = True,
    mo: o.ModelOptions = o.ModelOptions(),
    data: o.DataOptions = o.DataOptions(),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Prune each layer alone at a few ratios: val top-1, MACs and latency saved (md, json, png).

    Feed the result to `compress prune --from-sensitivity OUT --max-drop 1`.
    """
    from compress.models.errors import UsageError
    from compress.pruning.sensitivity import SensitivityConfig
    from compress.stages.prune import run_sensitivity

    try:
        rs = [float(r) for r in ratios.split(",") if r.strip()]
    except ValueError:
        raise UsageError(
            f"--ratios: cannot read {ratios!r}", hint="e.g. --ratios 0.25,0.5,0.75"
        ) from None
    cfg = SensitivityConfig(
        ratios=rs,
        criterion=criterion,
        round_to=round_to if round_to > 1 else None,
        ignore=list(ignore or []),
        latency=latency,
    )
    r = run_sensitivity(
        mo.of(model),
        cfg,
        data.config(),
        out,
        overwrite=overwrite,
        val_limit=val_limit or None,
    )
    console.print(f"{len(r.layers)} layers analysed; report: {out}/sensitivity.md (+ .json, .png)")
    write_json(json_out, {"out": str(out), **r.to_dict()})


def register(app: typer.Typer) -> None:
    app.command("prune")(o.with_groups(prune))
    app.command("sensitivity")(o.with_groups(sensitivity))
