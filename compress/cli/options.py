"""Options shared by several verbs, declared once (Annotated types) and turned into configs."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.stages.common import ModelRef
from models.data import DataConfig

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Zoo name (see `compress models`), artifact directory, or path/to/file.py:factory.",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        help="Weights: .safetensors, artifact dir, .pt/.pth state_dict (weights_only), `random` "
        "(explicitly untrained), or `imagenet` (torchvision's published weights for alexnet, "
        "vgg16, vgg16_bn, resnet18, resnet50; downloaded once into $COMPRESS_CACHE; another "
        "--num-classes replaces the classifier)."
    ),
]
NumClassesOpt = Annotated[
    int | None, typer.Option(help="Classes of a zoo model (default: from the data set).")
]
InChannelsOpt = Annotated[
    int | None, typer.Option(help="Input channels of a zoo model (default: from the data set).")
]
InputSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="Input height=width of a zoo model (default: from the data set; 224 = ImageNet shape)."
    ),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow .pt files that need arbitrary code to unpickle (only for files you trust).",
    ),
]
DatasetOpt = Annotated[
    str | None, typer.Option(help="fashion-mnist (default), mnist, or imagefolder.")
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        help="Data directory (IDX files, or imagefolder root with train/ and val/). Also "
        "$COMPRESS_DATA_DIR; Fashion-MNIST is found in /usr/share/datasets/fashion-mnist."
    ),
]
BatchSizeOpt = Annotated[int, typer.Option(help="Training batch size.")]
SeedOpt = Annotated[
    int,
    typer.Option(
        help="Seed for shuffling and init, and for the train/val split of a zoo model (an "
        "artifact keeps the split it was trained on, so its validation images stay unseen)."
    ),
]
OutOpt = Annotated[str, typer.Option("--out", "-o", help="Output artifact directory.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace --out if it exists.")]
JsonOpt = Annotated[
    str | None,
    typer.Option("--json", help="Also write the result as JSON to this file (`-` for stdout)."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]
AmpOpt = Annotated[
    str,
    typer.Option(
        help="Mixed precision: off, fp16 (CUDA), bf16, or auto (fp16 on CUDA; bf16 only on CPUs "
        "with native bf16 and for models big enough to gain from it, else fp32)."
    ),
]
LimitOpt = Annotated[
    int | None, typer.Option(help="Use at most this many training samples (quick runs).")
]


def model_ref(
    model: str,
    weights: str | None,
    num_classes: int | None,
    in_channels: int | None,
    input_size: int | None,
    trust_pickle: bool,
) -> ModelRef:
    return ModelRef(
        model=model,
        weights=weights,
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        trust_pickle=trust_pickle,
    )


def data_config(
    dataset: str | None,
    data_dir: str | None,
    *,
    batch_size: int = 128,
    seed: int = 0,
    limit: int | None = None,
    augment: bool = False,
) -> DataConfig:
    """Data options; dataset None means "the input artifact's data set, else Fashion-MNIST"."""
    return DataConfig(
        dataset=dataset,
        data_dir=data_dir,
        batch_size=batch_size,
        seed=seed,
        limit=limit,
        augment=augment,
    )
