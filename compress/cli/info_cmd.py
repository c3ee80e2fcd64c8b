"""`compress models` (the zoo) and `compress info` (an artifact's card)."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.cli.options import JsonOpt, verb
from compress.cli.output import console, table, write_json


@verb("models")
def models_cmd(
    input_size: Annotated[int, typer.Option(help="Input size to show specs for.")] = 28,
    in_channels: Annotated[int, typer.Option(help="Input channels.")] = 1,
    num_classes: Annotated[int, typer.Option(help="Classes.")] = 10,
    json_out: JsonOpt = None,
) -> None:
    """List the model zoo with parameter counts and specs at the given shape, and the published
    weights each model accepts by name (`--weights imagenet`)."""
    from compress.models.jsontypes import JsonObject
    from compress.models.zoo.pretrained import names_for
    from compress.models.zoo.registry import create_model, list_models, spec_of

    rows: list[JsonObject] = []
    shape = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
    for name in list_models():
        m = create_model(name, **shape)
        s = spec_of(m)
        rows.append(
            {
                "name": name,
                "variant": s.variant,
                "params": sum(p.numel() for p in m.parameters()),
                "classifier": s.classifier,
                "mean": list(s.mean),
                "std": list(s.std),
                "weights": [n.split(" ")[0] for n in names_for(name)],
            }
        )
    write_json(json_out, rows)
    if json_out == "-":
        return
    title = f"model zoo at {in_channels}x{input_size}x{input_size}, {num_classes} classes"
    columns = ("name", "variant", "params", "classifier", "mean/std", "--weights")
    cells = [
        (
            r["name"],
            r["variant"],
            f"{r['params']:,}",
            r["classifier"],
            f"{tuple(r['mean'])}/{tuple(r['std'])}",
            ", ".join(r["weights"]) or "-",
        )
        for r in rows
    ]
    console.print(table(title, columns, cells))


@verb("info")
def info(
    artifact: Annotated[str, typer.Argument(help="Artifact directory.")],
    json_out: JsonOpt = None,
) -> None:
    """Show an artifact's card: architecture, precision, metrics and lineage."""
    from compress.models.artifacts.artifact import card_json, read_card

    card = read_card(artifact)
    a = card.architecture
    console.print(
        f"[bold]{artifact}[/]: {card.kind} {a.name} "
        f"({a.in_channels}x{a.input_size}x{a.input_size} -> {a.num_classes}), "
        f"{card.precision}, {'trained' if card.trained else 'UNTRAINED'}"
    )
    for split in ("val", "test"):
        if split in card.metrics:
            console.print(f"  {split} top-1: {100 * card.metrics[split]['top1']:.2f} %")
    for f, meta in card.files.items():
        console.print(f"  {f}: {meta['bytes']:,} bytes")
    if card.code is not None:
        console.print(
            f"  code: {card.code.file}, factory {card.code.factory}, sha256 {card.code.sha256} "
            "(runs only with --trust-code)",
            highlight=False,
        )
    console.print("  lineage: " + " -> ".join(h["stage"] for h in card.history))
    for h in card.history:
        if h.get("stage") == "create" and isinstance(h.get("pretrained"), dict):
            p = h["pretrained"]
            console.print(
                f"  weights: {p['name']} ({p.get('torchvision', '?')}) from {p['url']}, "
                f"classifier {p['classifier']['classes']}"
            )
    write_json(json_out, card_json(card))
