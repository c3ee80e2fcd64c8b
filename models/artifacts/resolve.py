"""One rule for what `--model` and `--weights` mean everywhere.

`--model`: a zoo name, an artifact directory, or `path/to/file.py:factory`; `onnx_input` says
whether it is ONNX. `--weights`: a .safetensors file, an artifact directory, a `weights_only`
state_dict (.pt/.pth/.bin), `random` (explicitly untrained), or published weights (`imagenet`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from compress.models.artifacts.artifact import (
    ONNX,
    WEIGHTS,
    Card,
    is_artifact,
    load_model,
    read_card,
)
from compress.models.artifacts.structure import apply_structure
from compress.models.errors import ArtifactError, UsageError
from compress.models.jsontypes import JsonObject
from compress.models.weights.reading import load_into, read_state_dict
from compress.models.zoo.pretrained import (
    for_file,
    load_pretrained,
    looks_like_name,
    lookup,
    names_for,
)
from compress.models.zoo.registry import create_model, is_factory_ref

# Ways to give a zoo or factory model its weights besides training it, as `--weights` hints.
WEIGHTS_HINTS: list[str] = [
    "--weights FILE (.safetensors, a .pt/.pth state_dict, or an artifact directory)",
    "--weights random for a latency-only study (recorded as untrained)",
]


def missing_weights_hint(ref: str, verb: str) -> str:
    """What to do when `ref` (a zoo name or factory) has no trained weights for `verb`."""
    quoted = f"'{ref}'" if is_factory_ref(ref) else ref
    slug = Path(ref.rsplit(":", 1)[0]).stem if is_factory_ref(ref) else ref
    train = (
        f"train it first (`compress train --model {quoted} --out runs/{slug}`; `--epochs 1 "
        f"--limit 5000` makes a quick first artifact), then {verb} runs/{slug}"
    )
    published = [] if is_factory_ref(ref) else names_for(ref)
    extra = [f"--weights {n}: published weights, downloaded once" for n in published]
    return "; or ".join([train, *extra, *WEIGHTS_HINTS])


@dataclass
class ModelSource:
    """A resolved model: the module, its card if it came from an artifact, and provenance."""

    model: nn.Module
    card: Card | None
    trained: bool
    ref: str
    weights: str  # path, "artifact", "random", "none" or a published name ("imagenet")
    pretrained: JsonObject | None = None  # provenance of published weights (card JSON)


@dataclass(frozen=True)
class OnnxInput:
    """A `--model` that is ONNX: the file to run, and its artifact's card (None for a bare file)."""

    file: Path
    card: Card | None


def onnx_input(ref: str | Path) -> OnnxInput | None:
    """The ONNX behind `ref` (a `.onnx` file or an ONNX artifact); None for anything else."""
    path = Path(ref)
    if path.is_file() and path.suffix == ".onnx":
        return OnnxInput(path, None)
    if is_artifact(path):
        card = read_card(path)
        if card.kind == "onnx":
            return OnnxInput(path / ONNX, card)
    return None


@dataclass
class ShapeArgs:
    """Shape options for zoo/factory models (ignored for artifacts, whose card decides)."""

    num_classes: int = 10
    in_channels: int = 1
    input_size: int = 28


def resolve_model(
    ref: str,
    *,
    weights: str | None = None,
    shape: ShapeArgs | None = None,
    trust_pickle: bool = False,
    trust_code: bool = False,
) -> ModelSource:
    """Build or load the model `ref` names, then apply `weights` if given."""
    shape = shape or ShapeArgs()
    if is_artifact(ref):
        card = read_card(ref)
        if card.kind == "onnx":
            raise ArtifactError(
                f"{ref} is an ONNX artifact; this command needs a PyTorch model",
                hint="pass the PyTorch artifact it was exported from",
            )
        model, card = load_model(ref, trust_code=trust_code)
        src = ModelSource(model, card, card.trained, ref, "artifact")
    elif Path(ref).is_dir():
        raise ArtifactError(f"{ref} is a directory but not an artifact (no card.json)")
    else:
        model = create_model(ref, **asdict(shape))
        src = ModelSource(model, None, False, ref, "none")
    if weights is not None:
        _apply_weights(src, weights, trust_pickle)
    return src


def zoo_weights(ref: str, weights: str | None) -> str | None:
    """`weights` for `ref` when several models share one `--weights`: it fills zoo names and
    factories, while artifacts and model files already carry theirs."""
    return None if Path(ref).exists() else weights


def _apply_weights(src: ModelSource, weights: str, trust_pickle: bool) -> None:
    if weights == "random":
        if src.card is not None:
            raise UsageError("--weights random makes no sense with an artifact as --model")
        src.weights, src.trained = "random", False
        return
    if looks_like_name(weights):
        if src.card is not None or is_factory_ref(src.ref):
            raise UsageError(
                f"--weights {weights}: published weights apply to zoo models, not to {src.ref}",
                hint="pass a weights file or an artifact directory instead",
            )
        entry = lookup(src.ref, weights)
        src.pretrained = load_pretrained(src.model, entry)
        src.weights, src.trained = entry.name, True
        return
    by_file = for_file(src.ref, weights) if src.card is None else None
    if by_file is not None:  # torchvision's file fetched by hand: verified, transferred
        src.pretrained = load_pretrained(src.model, by_file, weights)
        src.weights, src.trained = str(weights), True
        return
    if is_artifact(weights):
        wcard = read_card(weights)
        if wcard.structure:
            apply_structure(src.model, wcard.structure)
        path = Path(weights) / WEIGHTS
        src.trained = wcard.trained
    else:
        path = Path(weights)
        src.trained = True
    load_into(src.model, read_state_dict(path, trust_pickle=trust_pickle), str(path))
    src.weights = str(weights)
