"""`compress predict`: class names and probabilities for image files, from a deployed directory.

`deploy.json` says how to run the model (runtime, precision, threads), the card how to
preprocess: images go through the very transforms training used (`ImageFiles`: channels,
resize, mean/std), then through the runner `deploy` measured.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from compress.export.bench.cases import BenchModel, Case, batch_fn, open_runner
from compress.export.bench.timing import torch_threads
from compress.export.runtimes.runner import TORCH_RUNTIMES, Runner
from compress.models.artifacts.artifact import ONNX, Card, read_card
from compress.models.data.imagefolder import EXTENSIONS, ImageFiles
from compress.models.errors import ArtifactError, InvalidInputError, UsageError
from compress.models.jsontypes import JsonObject
from compress.models.options import option
from compress.stages.deploy import MANIFEST, SCHEMA

BATCH = 64


@dataclass(frozen=True)
class PredictConfig:
    """How many classes to report per image."""

    top_k: int = option(3, "Classes shown per image.", flag="--top")


@dataclass
class Prediction:
    """The top classes of one image, most probable first."""

    image: str
    label: int
    name: str
    probability: float
    top: list[tuple[str, float]]

    def to_dict(self) -> JsonObject:
        return asdict(self)


@dataclass
class Deployed:
    """A deployed directory opened for inference."""

    manifest: dict[str, Any]
    card: Card
    runner: Runner
    cand: Case

    @property
    def class_names(self) -> list[str]:
        n = self.card.model_spec.num_classes
        names = list(self.manifest.get("class_names") or self.card.class_names)
        return names if len(names) == n else [str(i) for i in range(n)]


def load_deployed(path: str | Path) -> Deployed:
    """Read deploy.json and the model files beside it; open the runner it chose."""
    path = Path(path)
    man_path = path / MANIFEST
    if not man_path.is_file():
        raise ArtifactError(
            f"{path} is not a deployed directory (no {MANIFEST})",
            hint="make one with `compress deploy --model ARTIFACT --out DIR`",
        )
    try:
        manifest = json.loads(man_path.read_text())
    except ValueError as e:
        raise ArtifactError(f"{man_path} is not valid JSON: {e}") from e
    if manifest.get("schema") != SCHEMA:
        raise ArtifactError(f"{man_path}: unknown schema {manifest.get('schema')!r}")
    card = read_card(path)
    if manifest["runtime"] in TORCH_RUNTIMES:
        from compress.models.artifacts.artifact import load_model

        model = BenchModel(path.name, card.model_spec, torch_model=load_model(path)[0], card=card)
    else:
        model = BenchModel(path.name, card.model_spec, onnx_path=str(path / ONNX), card=card)
    cand = Case(model, manifest["runtime"], manifest["precision"], int(manifest["threads"]))
    with torch_threads(cand.threads):
        runner = open_runner(cand)
    return Deployed(manifest, card, runner, cand)


def image_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the images under them (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS)
            if not found:
                raise InvalidInputError(f"no images ({', '.join(sorted(EXTENSIONS))}) under {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InvalidInputError(f"image not found: {p}")
    if not out:
        raise UsageError("give at least one image file or folder")
    return out


def predict(
    model: str | Path | Deployed,
    images: Sequence[str | Path],
    config: PredictConfig | None = None,
    **options: Any,
) -> list[Prediction]:
    """The `top_k` classes of each image (files or folders) from a `deploy` directory, on the
    runtime, precision and threads deploy chose, preprocessed exactly as in training
    (`compress.predict`, `compress predict`; `options` override `config`, e.g. `top_k=5`)."""
    top_k = replace(config or PredictConfig(), **options).top_k
    d = model if isinstance(model, Deployed) else load_deployed(model)
    paths = image_paths(images)
    ds = ImageFiles([(p, 0) for p in paths], d.card.model_spec)
    run = batch_fn(d.runner)
    names = d.class_names
    out: list[Prediction] = []
    for start in range(0, len(paths), BATCH):
        idx = range(start, min(start + BATCH, len(paths)))
        x = ds[list(idx)][0].numpy().astype(np.float32)
        with torch_threads(d.cand.threads):
            logits = np.asarray(run(x), dtype=np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))  # softmax
        for i, p in zip(idx, e / e.sum(axis=1, keepdims=True), strict=True):
            order = [int(k) for k in np.argsort(-p)[: max(1, top_k)]]
            top = [(names[k], float(p[k])) for k in order]
            out.append(Prediction(str(paths[i]), order[0], *top[0], top))
    return out
