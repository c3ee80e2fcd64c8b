"""`compress predict`: class names and probabilities for images, from a deployed directory."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.cli.output import console


def predict(
    images: Annotated[list[str], typer.Argument(help="Image files (PNG/JPEG) or folders.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="A directory written by `compress deploy`.")
    ],
    top: Annotated[int, typer.Option(help="Classes shown per image.")] = 3,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the predictions as JSON.")
    ] = False,
) -> None:
    """Classify images with a deployed model, on the runtime, precision and threads deploy chose, preprocessed as in training (the card's input size, channels, mean/std)."""
    import json

    from compress.stages.predict import predict as run_predict

    preds = run_predict(model, images, top_k=top)
    if json_out:
        print(json.dumps([p.to_dict() for p in preds], indent=2))
        return
    for p in preds:
        others = ", ".join(f"{n} {100 * q:.1f} %" for n, q in p.top[1:])
        console.print(
            f"{p.image}: [bold]{p.name}[/] {100 * p.probability:.1f} %"
            + (f" ({others})" if others else ""),
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
