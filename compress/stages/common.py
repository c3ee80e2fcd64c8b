"""What every stage needs first: the input model and the data shaped for it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compress.export.runtimes.input_size import at_input_size
from compress.models.artifacts.artifact import Card, new_card
from compress.models.artifacts.resolve import ModelSource, ShapeArgs, resolve_model
from compress.models.data.datasets import DataBundle, DataConfig, dataset_shape
from compress.models.zoo.pretrained import for_file, looks_like_name
from compress.models.zoo.registry import input_size_for_data


@dataclass
class ModelRef:
    """`--model` plus the options that shape or fill it."""

    model: str
    weights: str | None = None
    num_classes: int | None = None
    in_channels: int | None = None
    input_size: int | None = None
    trust_pickle: bool = False
    trust_code: bool = False  # run a user factory stored in an artifact (models.zoo.usercode)
    kwargs: dict[str, Any] = field(default_factory=dict)


Model = str | Path | ModelRef  # what every verb takes: a zoo name, artifact, `file.py:factory`


def model_ref(model: Model) -> ModelRef:
    """A :class:`ModelRef` for a zoo name, artifact directory or `file.py:factory`."""
    return model if isinstance(model, ModelRef) else ModelRef(str(model))


def data_config_for(data: DataConfig | None, card: Card | None) -> DataConfig:
    """The data a stage uses: the data set named in `data`, else the input artifact's (same
    split, so its validation images stay unseen), else Fashion-MNIST; batch size, limit,
    augmentation and the batch order (`data.seed`) always come from `data`."""
    data = data or DataConfig()
    if data.dataset is not None:
        return data
    if card is not None and card.dataset:
        d = card.dataset
        return replace(
            data,
            dataset=str(d.get("dataset", "fashion-mnist")),
            data_dir=data.data_dir or d.get("data_dir"),
            val_size=int(d.get("val_size", data.val_size)),
            seed=int(d.get("val_seed", data.seed)),
            order_seed=data.seed if data.order_seed is None else data.order_seed,
        )
    return replace(data, dataset="fashion-mnist")


def load_source(model: Model, data: DataConfig | None) -> ModelSource:
    """Resolve the model; zoo models take their shape from the options, else from the data."""
    ref = model_ref(model)
    c, s, n = dataset_shape(data or DataConfig())
    if looks_like_name(ref.weights) or (ref.weights and for_file(ref.model, ref.weights)):
        c = 3  # published ImageNet weights take RGB; 1-channel data is repeated to 3 channels
    shape = ShapeArgs(
        num_classes=ref.num_classes or n,
        in_channels=ref.in_channels or c,
        input_size=ref.input_size or input_size_for_data(ref.model, s),
    )
    return resolve_model(
        ref.model,
        weights=ref.weights,
        shape=shape,
        trust_pickle=ref.trust_pickle,
        trust_code=ref.trust_code,
    )


def load_source_at(model: Model, data: DataConfig | None, size: int | None) -> ModelSource:
    """:func:`load_source` at size x size when `size` is given: a zoo name or factory is built
    at it, an artifact re-targeted when resolution-independent (else UsageError naming the
    layer); the in-memory card then carries the new spec."""
    ref = model_ref(model)
    if size is None:
        return load_source(ref, data)
    src = load_source(replace(ref, input_size=ref.input_size or size), data)
    spec = at_input_size(src.model, size)
    if src.card is not None:
        src.card.spec = spec.to_dict()
    return src


def card_for(src: ModelSource, bundle: DataBundle | None) -> Card:
    """Continue the input's card (lineage kept) or start a new one for a fresh model."""
    card = src.card.model_copy(deep=True) if src.card else new_card(src.model)
    if src.card is None:
        entry: dict[str, Any] = {"stage": "create", "model": src.ref, "weights": src.weights}
        if src.pretrained:
            entry["pretrained"] = src.pretrained
        card.history.append(entry)
    if bundle is not None:
        card.class_names = list(bundle.class_names)
        cfg = bundle.config  # the card's `dataset` section: enough to reload the same splits
        card.dataset = {**bundle.describe(), "data_dir": cfg.data_dir, "val_size": cfg.val_size}
    card.trained = src.trained
    return card
