"""`compress factorize`: Linear layers as truncated SVDs, fine-tuned with KD from the parent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, pct, write_json

if TYPE_CHECKING:
    from compress.models.data.splits import DataConfig
    from compress.stages.results import FactorizeSummary


def factorize(
    model: o.ModelOpt,
    out: o.OutOpt,
    rank: Annotated[
        int | None, typer.Option(help="One rank for every chosen Linear layer.")
    ] = None,
    layer_rank: Annotated[
        list[str] | None,
        typer.Option(help="Rank of one layer, NAME=RANK (repeatable), e.g. fc1=16."),
    ] = None,
    param_target: Annotated[
        float | None,
        typer.Option(help="Keep this fraction (0-1) of each chosen layer's weights."),
    ] = None,
    layers: Annotated[
        list[str] | None,
        typer.Option(
            "--layers",
            help="Linear module to factorize (repeatable); default: all but the classifier.",
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="KD fine-tuning epochs from the parent (0: none).")
    ] = 2,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the fine-tuning.")] = 1e-3,
    temperature: Annotated[float, typer.Option(help="KD temperature.")] = 2.0,
    alpha: Annotated[float, typer.Option(help="Weight of the teacher term in [0, 1].")] = 0.5,
    mo: o.ModelOptions = o.ModelOptions(),
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
    from compress.factorization.svd import FactorizeConfig

    cfg = FactorizeConfig(
        rank=rank,
        ranks=o.pairs(layer_rank or [], "--layer-rank", "NAME=RANK (e.g. fc1=16)"),
        param_target=param_target,
        layers=tuple(layers or ()),
        epochs=epochs,
        lr=lr,
        temperature=temperature,
        alpha=alpha,
        seed=data.seed,
    )
    with RichHooks() as hooks:
        r = api.factorize(mo.of(model), out, cfg, data, overwrite=overwrite, hooks=hooks)
    _print(r)
    write_json(json_out, r.to_dict())


def _print(r: FactorizeSummary) -> None:
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


def register(app: typer.Typer) -> None:
    app.command("factorize")(o.with_groups(factorize))
