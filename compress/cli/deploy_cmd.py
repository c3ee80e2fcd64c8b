"""`compress deploy` (measure an artifact on every runtime x precision x threads, deploy the
fastest) and `compress predict` (classify images with the deployed directory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from compress.cli import options as o
from compress.cli.output import console, err_console, pct, table, write_json

if TYPE_CHECKING:
    from compress.models.data.splits import DataConfig
    from compress.stages.deploy import DeployConfig
    from compress.stages.predict import PredictConfig


@o.verb("deploy")
def deploy(
    model: o.ModelOpt,
    out: o.OutOpt,
    how: DeployConfig = o.options_from(o.DEPLOY),
    data: DataConfig = o.options_from(o.DATA, only=o.WHERE),
    overwrite: o.OverwriteOpt = False,
    json_out: o.JsonOpt = None,
) -> None:
    """Try every runtime x precision x thread count this machine has for an artifact, keep those within --max-drop of its validation top-1, time them in interleaved rounds, and write the fastest to --out (model files + deploy.json).

    Unavailable runtimes and precisions are listed with the reason. If no candidate passes the accuracy gate, nothing is written and the exit code is 5.
    """
    from compress import api

    with err_console.status("deploy: measuring candidates") as status:
        result = api.deploy(
            model, out, how, data, overwrite=overwrite, progress=lambda s: status.update(s)
        )
    _print(result.to_dict())
    write_json(json_out, result.to_dict())


def _print(r: dict[str, Any]) -> None:
    right = ("thr", "val top-1", "drop pt", p50_column(r["candidates"]))
    title = f"deploy candidates (gate vs {pct(r['reference_top1'])} {r['reference']})"
    rows, skipped = [], [c for c in r["candidates"] if c["status"] == "skipped"]
    for c in (c for c in r["candidates"] if c["status"] != "skipped"):
        first = next(iter((c.get("latency") or {}).values()), None)
        drop = c.get("drop_pts")
        status = c["status"] + (f": {c['reason']}" if c.get("reason") else "")
        rows.append(
            [
                c["runtime"],
                c["precision"],
                c.get("effective_precision") or "-",
                str(c.get("threads") or "-"),
                pct(c.get("val_top1")),
                "-" if drop is None else f"{drop:.2f}",
                "-" if first is None else f"{first['p50_ms']:.3f}",
                f"[green]{status}[/]" if c["status"] == "chosen" else status,
            ]
        )
    console.print(table(title, ("runtime", "asked", "runs in", *right, "status"), rows, right))
    for c in skipped:
        console.print(f"[dim]skipped {c['runtime']} {c['precision']}: {c['reason']}[/]")
    for key in ("vs_fastest_dense", "vs_ort_fp32"):
        sp = (r.get("speedup") or {}).get(key)
        if sp:
            console.print(speedup_line(sp, r["speedup"]), highlight=False)
    ch = r["chosen"]
    console.print(
        f"deployed on [bold]{ch['runtime']}[/] {ch['precision']} with {ch['threads']} "
        f"thread(s) to {r['out']}"
    )


def p50_column(candidates: list[dict[str, Any]]) -> str:
    """`p50 ms b1`: the table shows the first batch size, the one that decides."""
    timed = [c["latency"] for c in candidates if c.get("latency")]
    return f"p50 ms b{next(iter(timed[0]))}" if timed else "p50 ms"


def speedup_line(sp: dict[str, Any], speedup: dict[str, Any]) -> str:
    """`2.10x vs ... (ort-cpu/fp32/1t: 0.042 -> 0.020 ms p50 at batch 1)`; below 1x it says
    in so many words that the deployed model is slower than its baseline."""
    line = (
        f"{sp['speedup']:.2f}x {sp['label']} ({sp['baseline']}: {sp['baseline_p50_ms']:.3f} -> "
        f"{speedup['p50_ms']:.3f} ms p50 at batch {speedup['batch_size']})"
    )
    if sp["speedup"] < 1:
        line = f"[yellow]{line}: SLOWER than the baseline here[/]"
    return line


@o.verb("predict")
def predict(
    images: Annotated[list[str], typer.Argument(help="Image files (PNG/JPEG) or folders.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="A directory written by `compress deploy`.")
    ],
    how: PredictConfig = o.options_from(o.PREDICT),
    json_out: o.JsonOpt = None,
) -> None:
    """Classify images with a deployed model, on the runtime, precision and threads deploy chose, preprocessed as in training (the card's input size, channels, mean/std)."""
    from compress import api

    preds = api.predict(model, images, how)
    write_json(json_out, [p.to_dict() for p in preds])
    if json_out == "-":
        return
    for p in preds:
        others = ", ".join(f"{n} {100 * q:.1f} %" for n, q in p.top[1:])
        console.print(
            f"{p.image}: [bold]{p.name}[/] {100 * p.probability:.1f} %"
            + (f" ({others})" if others else ""),
            highlight=False,
        )
