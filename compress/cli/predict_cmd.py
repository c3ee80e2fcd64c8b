"""`compress predict`: class names and probabilities for images, from a deployed directory."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.cli import options as o
from compress.cli.output import console, write_json


@o.verb("predict")
def predict(
    images: Annotated[list[str], typer.Argument(help="Image files (PNG/JPEG) or folders.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="A directory written by `compress deploy`.")
    ],
    top: Annotated[int, typer.Option(help="Classes shown per image.")] = 3,
    json_out: o.JsonOpt = None,
) -> None:
    """Classify images with a deployed model, on the runtime, precision and threads deploy chose, preprocessed as in training (the card's input size, channels, mean/std)."""
    from compress import api

    preds = api.predict(model, images, top_k=top)
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
