"""Options shared by several verbs, declared once (Annotated types and option groups)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

import typer

if TYPE_CHECKING:  # torch-heavy; imported when a command runs, so `--help` stays fast
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.training.config import TrainConfig

R = TypeVar("R")

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
RunInputSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--input-size",
        help="Input height=width to run at. A zoo name is built at N (default: from the data "
        "set; 224 = ImageNet shape). A PyTorch artifact is re-targeted to N when it is "
        "resolution-independent (adaptive pooling before the head, as ResNet): checked by a "
        "shape probe, and a size too small for a layer's stride, or a fixed-size Linear after "
        "flatten (LeNet-5), is refused naming the layer. An ONNX artifact runs at the size it "
        "was exported at (recorded in its card); another N is refused unless its H/W are "
        "dynamic. The artifact itself is never changed.",
    ),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow .pt files that need arbitrary code to unpickle (only for files you trust).",
    ),
]
TrustCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="Allow an artifact (or recipe) to build its model by running the Python factory it "
        "names (only for code you trust; a factory you pass as --model FILE.py:fn always runs).",
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
EpochsOpt = Annotated[int, typer.Option(help="Training epochs.")]
LrOpt = Annotated[float, typer.Option(help="Peak learning rate.")]
WeightDecayOpt = Annotated[float, typer.Option(help="Weight decay.")]
OptimizerOpt = Annotated[str, typer.Option(help="adamw or sgd.")]
ScheduleOpt = Annotated[str, typer.Option(help="onecycle, cosine or constant.")]
ChannelsLastOpt = Annotated[bool, typer.Option(help="Channels-last memory format.")]


@dataclass(frozen=True)
class OptionGroup:
    """Options several verbs share, declared once: a verb takes the group as one parameter and
    :func:`with_groups` spreads its fields into the verb's options."""


@dataclass(frozen=True)
class ShapeOptions(OptionGroup):
    """How a zoo/factory model is shaped, and whether its weights file may be unpickled."""

    num_classes: NumClassesOpt = None
    in_channels: InChannelsOpt = None
    input_size: InputSizeOpt = None
    trust_pickle: TrustPickleOpt = False
    trust_code: TrustCodeOpt = False

    def ref(self, model: str, weights: str | None = None) -> ModelRef:
        """The library's model reference for `model` with these options."""
        from compress.stages.common import ModelRef

        return ModelRef(
            model=model,
            weights=weights,
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            input_size=self.input_size,
            trust_pickle=self.trust_pickle,
            trust_code=self.trust_code,
        )


@dataclass(frozen=True)
class ModelOptions(ShapeOptions):
    """The shape options plus `--weights`."""

    weights: WeightsOpt = None

    def of(self, model: str) -> ModelRef:
        return self.ref(model, self.weights)


@dataclass(frozen=True)
class RunModelOptions(ModelOptions):
    """The model options of verbs that run a model at an input size (export, bench):
    `--input-size` also re-targets an artifact (see RunInputSizeOpt)."""

    input_size: RunInputSizeOpt = None


@dataclass(frozen=True)
class DataOptions(OptionGroup):
    """Which data set, and where it is."""

    dataset: DatasetOpt = None
    data_dir: DataDirOpt = None

    def config(
        self,
        *,
        batch_size: int = 128,
        seed: int = 0,
        limit: int | None = None,
        augment: bool = False,
    ) -> DataConfig:
        """Dataset None means "the input artifact's data set, else Fashion-MNIST"."""
        from compress.models.data.datasets import DataConfig

        return DataConfig(
            dataset=self.dataset,
            data_dir=self.data_dir,
            batch_size=batch_size,
            seed=seed,
            limit=limit,
            augment=augment,
        )


@dataclass(frozen=True)
class DeviceOptions(OptionGroup):
    """Where and in which precision a verb trains."""

    device: DeviceOpt = "auto"
    amp: AmpOpt = "auto"


@dataclass(frozen=True)
class FitOptions(OptionGroup):
    """The optimization of a training run: epochs, learning rate and schedule, weight decay,
    memory format. A verb with other defaults declares them in its default instance, e.g.
    `how: FitOptions = FitOptions(epochs=5)`."""

    epochs: EpochsOpt = 15
    lr: LrOpt = 4e-3
    weight_decay: WeightDecayOpt = 1e-4
    optimizer: OptimizerOpt = "adamw"
    schedule: ScheduleOpt = "onecycle"
    channels_last: ChannelsLastOpt = False

    def config(
        self,
        seed: int,
        dev: DeviceOptions,
        *,
        label_smoothing: float = 0.0,
        resume: bool = False,
    ) -> TrainConfig:
        """The library's TrainConfig (validated there)."""
        from compress.training.config import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            optimizer=self.optimizer,
            schedule=self.schedule,
            label_smoothing=label_smoothing,
            seed=seed,
            device=dev.device,
            amp=dev.amp,
            channels_last=self.channels_last,
            resume=resume,
        )


# Report files a verb writes besides --out, checked before any work like --out itself.
OUTPUT_FILES = {"json_out": "--json", "csv_out": "--csv", "md_out": "--md", "plot": "--plot"}


def check_output_files(kwargs: dict[str, Any]) -> None:
    """Refuse, before any work, a report file (--json, --csv, ...) that can't be written."""
    paths = {OUTPUT_FILES[k]: v for k, v in kwargs.items() if k in OUTPUT_FILES and v}
    if any(v != "-" for v in paths.values()):
        from compress.models.artifacts.artifact import check_writable

        for option, path in paths.items():
            if path != "-":
                check_writable(path, option)


def with_groups(fn: Callable[..., R]) -> Callable[..., R]:
    """Let Typer see each :class:`OptionGroup` parameter of `fn` as the group's options, and
    hand `fn` the group object built from them; report files are checked first. An option's
    default is its value in the parameter's default instance (else the field's default)."""
    sig = inspect.signature(fn, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type[OptionGroup]] = {}
    for p in sig.parameters.values():
        cls = p.annotation
        if not (isinstance(cls, type) and issubclass(cls, OptionGroup)):
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        groups[p.name] = cls
        hints = get_type_hints(cls, include_extras=True)
        given = p.default if isinstance(p.default, cls) else None
        params += [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=f.default if given is None else getattr(given, f.name),
                annotation=hints[f.name],
            )
            for f in fields(cls)
        ]
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise TypeError(f"{fn.__name__}: an option group repeats one of its options")

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> R:
        check_output_files(kwargs)
        for name, cls in groups.items():
            kwargs[name] = cls(**{f.name: kwargs.pop(f.name) for f in fields(cls)})
        return fn(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
