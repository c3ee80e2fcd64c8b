"""`compress run`: a recipe, end to end, with its report."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import MAIN_RANK, console, write_json

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a recipe option: stage.key=value (value in YAML), data.key=value, "
        "max_drop=value. Repeatable.",
    ),
]


ResumeOpt = Annotated[
    bool,
    typer.Option(
        help="Skip stages whose artifacts are complete and whose inputs are unchanged "
        "(an --out that does not exist yet starts afresh, with a warning)."
    ),
]


@o.verb("run")
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML (see recipes/).")],
    out: o.OutOpt,
    set_: SetOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the resolved plan; train nothing.")
    ] = False,
    resume: ResumeOpt = False,
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
    from compress.cli.summary import print_summary
    from compress.pipeline.recipe import load_recipe

    if dry_run:
        rec = load_recipe(recipe, set_ or [])
        rec.trust_code = rec.trust_code or trust_code
        _print_plan(rec, json_out)
        return

    def progress(name: str, i: int, total: int) -> None:
        console.rule(f"[bold]stage {i + 1}/{total}: {name}")

    with RichHooks() as hooks:
        result = api.run_recipe(
            recipe,
            out,
            overrides=set_ or [],
            resume=resume,
            overwrite=overwrite,
            trust_code=trust_code,
            progress=progress,
            hooks=hooks,
        )
    if not MAIN_RANK:  # under torchrun rank 0 writes the report and prints the summary
        return
    assert result.report is not None  # written on rank 0
    print_summary(result.report)
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
