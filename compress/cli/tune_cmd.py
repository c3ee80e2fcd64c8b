"""`compress tune`: multi-objective Optuna search over a recipe's `search:` section."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, write_json


def tune(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML with a `search:` section.")],
    out: o.OutOpt,
    trials: Annotated[int, typer.Option(help="Trials in total (counting earlier runs).")] = 10,
    objectives: Annotated[
        str,
        typer.Option(
            help="Comma list from accuracy (validation top-1), latency (bench p50, batch 1), size."
        ),
    ] = "accuracy,latency",
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default sqlite:///OUT/study.db); share it to cooperate "
            "across processes or machines."
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study name (default: recipe name).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    sampler: Annotated[str, typer.Option(help="auto, tpe, nsga2 or random.")] = "auto",
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override recipe options for every trial (e.g. a smaller budget: "
            "data.limit=10000).",
        ),
    ] = None,
    json_out: o.JsonOpt = None,
) -> None:
    """Search compression settings; writes the Pareto front, pareto.png and best-*.yaml."""
    from rich.table import Table

    from compress.cli.progress import RichHooks
    from compress.pipeline.recipe import load_recipe
    from compress.pipeline.tune import TuneConfig
    from compress.pipeline.tune import tune as run_tune

    cfg = TuneConfig(
        trials=trials,
        objectives=tuple(x.strip() for x in objectives.split(",")),
        storage=storage,
        study_name=study_name,
        timeout=timeout,
        seed=seed,
        sampler=sampler,
    )
    rec = load_recipe(recipe, set_ or [])
    with RichHooks() as hooks:
        res = run_tune(rec, cfg, out, hooks=hooks)
    table = Table(title=f"Pareto front of study {res.study_name} ({res.trials} trials)")
    for col in ("trial", *cfg.objectives, "params"):
        table.add_column(col)
    for p in res.pareto:
        table.add_row(str(p["trial"]), *(f"{p[k]:.4g}" for k in cfg.objectives), str(p["params"]))
    console.print(table)
    for obj, path in res.best_recipes.items():
        console.print(f"best {obj}: {path}  (reproduce: compress run {path} --out DIR)")
    if res.plot:
        console.print(f"plot: {res.plot}")
    write_json(
        json_out,
        {
            "study": res.study_name,
            "storage": res.storage,
            "trials": res.trials,
            "pareto": res.pareto,
            "best_recipes": res.best_recipes,
        },
    )


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
