"""`compress run` (a recipe, end to end, with its report) and `compress tune` (a multi-objective
Optuna search over a recipe's `search:` section)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import MAIN_RANK, console, table, write_json

if TYPE_CHECKING:
    from compress.pipeline.runner import RunConfig
    from compress.pipeline.tune import TuneConfig


@o.verb("run")
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML (see recipes/).")],
    out: o.OutOpt,
    how: RunConfig = o.options_from(o.RUN),
    overwrite: o.OverwriteOpt = False,
    trust_code: o.TrustCodeOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Run a recipe: train → prune → distill → quantize → export → bench, with a report.

    Each stage writes its artifact to OUT/NN-stage/ atomically; Ctrl-C keeps finished stages,
    and --resume continues from the first unfinished one. Gates (`max_drop`) exit with code 5.
    """
    from compress import api
    from compress.cli.progress import RichHooks
    from compress.pipeline.recipe import load_recipe

    if how.dry_run:
        rec = load_recipe(recipe, how.overrides)
        rec.trust_code = rec.trust_code or trust_code
        _print_plan(rec, json_out)
        return

    def progress(name: str, i: int, total: int) -> None:
        console.rule(f"[bold]stage {i + 1}/{total}: {name}")

    with RichHooks() as hooks:
        result = api.run_recipe(
            recipe,
            out,
            how,
            overwrite=overwrite,
            trust_code=trust_code,
            progress=progress,
            hooks=hooks,
        )
    if not MAIN_RANK:  # under torchrun rank 0 writes the report and prints the summary
        return
    assert result.report is not None  # written on rank 0
    console.print(compact_table(result.report.rows))  # the full table is in report.md/.html
    console.print(f"[bold]verdict:[/] {result.report.headline.verdict}", highlight=False)
    for line in result.report.baseline_lines:
        console.print(f"baseline {line}", highlight=False)
    for g in result.gates:
        console.print(f"gate {g['gate']}: {'passed' if g['passed'] else 'FAILED'}")
    console.print(
        f"done in {result.seconds:.0f} s. Report: [bold]{result.report.paths['html']}[/] "
        f"(also report.md, report.json)"
    )
    write_json(json_out, {"out": str(out), "stages": result.stages, "gates": result.gates})


def _print_plan(rec: Any, json_out: str | None) -> None:
    """`--dry-run`: the validated plan, stage by stage."""
    from compress.pipeline.runner import plan

    steps = [s.to_dict() for s in plan(rec)]
    console.print(f"[bold]{rec.name}[/]: model {rec.model}, {len(steps)} stages (valid)")
    for s in steps:
        gate = f", max_drop {s['max_drop']} pt" if s["max_drop"] is not None else ""
        console.print(
            f"  {s['folder']}: {s['kind']} ({s['consumes']} → {s['produces']})"
            f"{gate}  {s['options']}"
        )
    write_json(json_out, {"recipe": rec.name, "plan": steps})


@o.verb("tune")
def tune(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML with a `search:` section.")],
    out: o.OutOpt,
    how: TuneConfig = o.options_from(o.TUNE),
    trust_code: o.TrustCodeOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Search compression settings; writes the Pareto front, pareto.png and best-*.yaml."""
    from compress import api
    from compress.cli.progress import RichHooks

    with RichHooks() as hooks:
        res = api.tune(recipe, out, how, trust_code=trust_code, hooks=hooks)
    title = f"Pareto front of study {res.study_name} ({res.trials} trials)"
    rows = [
        [str(p["trial"]), *(f"{p[k]:.4g}" for k in how.objectives), str(p["params"])]
        for p in res.pareto
    ]
    console.print(table(title, ("trial", *how.objectives, "params"), rows))
    for obj, path in res.best_recipes.items():
        console.print(f"best {obj}: {path}  (reproduce: compress run {path} --out DIR)")
    if res.plot:
        console.print(f"plot: {res.plot}")
    doc = asdict(res)
    del doc["plot"]
    write_json(json_out, {"study": doc.pop("study_name"), **doc})


# What `compress run` prints at the end: one short row per stage, readable at 80 columns; the
# caption and the verdict say against what.
COLUMNS = ("stage", "params", "size ×", "test %", "Δ pt", "best speed-up")


def compact_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One short row of text per stage, in COLUMNS order."""
    from compress.export.bench.baseline import times
    from compress.pipeline.headline import best_speedup

    base = rows[0]["test_top1"] if rows else None
    out = []
    for r in rows:
        test = r["test_top1"]
        batches = {bs for by in r.get("speedups", {}).values() for bs in by}
        cases = [(bs, *best_speedup(r, bs)) for bs in sorted(batches, key=int)]
        best = max(cases, key=lambda b: b[2], default=None)
        out.append(
            [
                r["stage"],
                "-" if r["params"] is None else _short(r["params"]),
                "-" if r["size_ratio"] is None else f"{r['size_ratio']:.1f}×",
                "-" if test is None else f"{100 * test:.2f}",
                "-" if test is None or base is None else f"{100 * (test - base):+.2f}",
                f"{times(best[2])} {best[1]} b{best[0]}" if best and best[1] else "-",
            ]
        )
    return out


def _short(n: int) -> str:
    """61706 -> 61.7k, 25557032 -> 25.6M: params in five characters."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def compact_table(rows: list[dict[str, Any]]) -> Any:
    """A rich Table of `compact_rows`; cells fold instead of ending in an ellipsis."""
    from rich import box

    caption = "Δ pt: test top-1 vs the baseline; speed-up: p50 vs fastest dense case"
    title, cells = "what each stage bought and cost", compact_rows(rows)
    return table(title, COLUMNS, cells, COLUMNS[1:-1], "fold", box=box.SIMPLE_HEAD, caption=caption)
