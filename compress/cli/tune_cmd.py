"""`compress tune`: multi-objective Optuna search over a recipe's `search:` section."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import console, table, write_json

if TYPE_CHECKING:
    from compress.pipeline.tune import TuneConfig


SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override recipe options for every trial (e.g. a smaller budget: data.limit=10000).",
    ),
]


@o.verb("tune")
def tune(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML with a `search:` section.")],
    out: o.OutOpt,
    how: TuneConfig = o.options_from(o.TUNE),
    set_: SetOpt = None,
    trust_code: o.TrustCodeOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Search compression settings; writes the Pareto front, pareto.png and best-*.yaml."""
    from compress import api
    from compress.cli.progress import RichHooks

    with RichHooks() as hooks:
        res = api.tune(recipe, out, how, overrides=set_ or [], trust_code=trust_code, hooks=hooks)
    _print(res, how.objectives)
    doc = asdict(res)
    del doc["plot"]
    write_json(json_out, {"study": doc.pop("study_name"), **doc})


def _print(res: Any, objectives: tuple[str, ...]) -> None:
    title = f"Pareto front of study {res.study_name} ({res.trials} trials)"
    rows = [
        [str(p["trial"]), *(f"{p[k]:.4g}" for k in objectives), str(p["params"])]
        for p in res.pareto
    ]
    console.print(table(title, ("trial", *objectives, "params"), rows))
    for obj, path in res.best_recipes.items():
        console.print(f"best {obj}: {path}  (reproduce: compress run {path} --out DIR)")
    if res.plot:
        console.print(f"plot: {res.plot}")
