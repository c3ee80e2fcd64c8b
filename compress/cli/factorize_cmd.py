"""`compress factorize`: Linear layers as truncated SVDs, fine-tuned with KD from the parent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress.cli import options as o
from compress.cli.output import console, pct, write_json

if TYPE_CHECKING:
    from compress.factorization.svd import FactorizeConfig
    from compress.models.data.splits import DataConfig
    from compress.stages.results import FactorizeSummary


@o.verb("factorize")
def factorize(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: FactorizeConfig = o.options_from(o.FACTORIZE, take=("seed",)),
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

    with RichHooks() as hooks:
        r = api.factorize(mo.of(model), out, how, data, overwrite=overwrite, hooks=hooks)
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
