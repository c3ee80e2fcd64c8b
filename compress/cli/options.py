"""Options shared by several verbs, declared once (Annotated types and option groups)."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from compress.cli.fields import ConfigField, config_fields
from compress.models.errors import CompressError, UsageError
from compress.models.options import long_flag, option

if TYPE_CHECKING:  # torch-heavy; imported when a command runs, so `--help` stays fast
    from compress.stages.common import ModelRef

R = TypeVar("R")
Names = tuple[str, ...]

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Zoo name (see `compress models`), artifact directory, or path/to/file.py:factory.",
    ),
]
TRUST_CODE = (
    "Allow an artifact (or recipe) to build its model by running the Python factory it names "
    "(only for code you trust; a factory you pass as --model FILE.py:fn always runs)."
)
TrustCodeOpt = Annotated[bool, typer.Option("--trust-code", help=TRUST_CODE)]
OutOpt = Annotated[str, typer.Option("--out", "-o", help="Output artifact directory.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace --out if it exists.")]
JsonOpt = Annotated[
    str | None,
    typer.Option("--json", help="Also write the result as JSON to this file (`-` for stdout)."),
]


@dataclass(frozen=True)
class ShapeOptions:
    """How a zoo/factory model is shaped, and whether its weights file may be unpickled (a verb
    takes it as `options_from(SHAPE)`, as a config)."""

    num_classes: int | None = option(None, "Classes of a zoo model (default: from the data set).")
    in_channels: int | None = option(
        None, "Input channels of a zoo model (default: from the data set)."
    )
    input_size: int | None = option(
        None,
        "Input height=width of a zoo model (default: from the data set; 224 = ImageNet shape).",
    )
    trust_pickle: bool = option(
        False,
        "Allow .pt files that need arbitrary code to unpickle (only for files you trust).",
        flag="--trust-pickle",
    )
    trust_code: bool = option(False, TRUST_CODE, flag="--trust-code")

    def ref(self, model: str, weights: str | None = None) -> ModelRef:
        """The library's model reference for `model` with these options."""
        from compress.stages.common import ModelRef

        shape = {f.name: getattr(self, f.name) for f in fields(ShapeOptions)}
        return ModelRef(model=model, weights=weights, **shape)


@dataclass(frozen=True)
class ModelOptions(ShapeOptions):
    """The shape options plus `--weights`."""

    weights: str | None = option(
        None,
        "Weights: .safetensors, artifact dir, .pt/.pth state_dict (weights_only), `random` "
        "(explicitly untrained), or `imagenet` (torchvision's published weights for alexnet, "
        "vgg16, vgg16_bn, resnet18, resnet50; downloaded once into $COMPRESS_CACHE; another "
        "--num-classes replaces the classifier).",
    )

    def of(self, model: str) -> ModelRef:
        return self.ref(model, self.weights)


@dataclass(frozen=True)
class RunModelOptions(ModelOptions):
    """The model options of verbs that run a model at an input size (export, bench)."""

    input_size: int | None = option(
        None,
        "Input height=width to run at. A zoo name is built at N (default: from the data "
        "set; 224 = ImageNet shape). A PyTorch artifact is re-targeted to N when it is "
        "resolution-independent (adaptive pooling before the head, as ResNet): checked by a "
        "shape probe, and a size too small for a layer's stride, or a fixed-size Linear after "
        "flatten (LeNet-5), is refused naming the layer. An ONNX artifact runs at the size it "
        "was exported at (recorded in its card); another N is refused unless its H/W are "
        "dynamic. The artifact itself is never changed.",
        flag="--input-size",
    )


# Report files a verb writes besides --out, checked before any work like --out itself.
OUTPUT_FILES = {"json_out": "--json", "csv_out": "--csv", "md_out": "--md", "plot": "--plot"}


def check_output_files(kwargs: dict[str, Any]) -> None:
    """Refuse, before any work, a report file (--json, --csv, ...) that can't be written."""
    for key, path in kwargs.items():
        if key in OUTPUT_FILES and path and path != "-":
            from compress.models.artifacts.artifact import check_writable

            check_writable(path, OUTPUT_FILES[key])


# Where each config lives ("module:Class"); the CLI reads their fields without importing them.
PRUNE = "compress.pruning.config:PruneConfig"
QUANTIZE = "compress.quantization.context:QuantizeConfig"
DISTILL = "compress.distillation.distill:DistillConfig"
TRAIN = "compress.training.config:TrainConfig"
DATA = "compress.models.data.splits:DataConfig"
BENCH = "compress.export.bench.measure:BenchConfig"
TUNE = "compress.pipeline.tune:TuneConfig"
EXPORT = "compress.export.onnx.convert:ExportConfig"
DEPLOY = "compress.stages.deploy:DeployConfig"
FACTORIZE = "compress.factorization.svd:FactorizeConfig"
SENSITIVITY = "compress.pruning.sensitivity:SensitivityConfig"
EVAL = "compress.stages.evaluate:EvalConfig"
PREDICT = "compress.stages.predict:PredictConfig"
DOCTOR = "compress.export.doctor.diagnose:DoctorConfig"
RUN = "compress.pipeline.runner:RunConfig"
SHAPE, MODEL = "compress.cli.options:ShapeOptions", "compress.cli.options:ModelOptions"
RUN_MODEL = "compress.cli.options:RunModelOptions"
WHERE = ("dataset", "data_dir")  # the DataConfig options of a verb that only reads data
TRAIN_DATA = (*WHERE, "batch_size", "seed", "limit", "augment")  # ... and of one that trains
_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
_LISTS = ("repeat", "pairs")  # metadata "cli": a repeatable option (NAME=N pairs for "pairs")
_CSV = ("csv", "csv-int", "csv-float")  # metadata "cli": one comma-separated option


@dataclass(frozen=True)
class ConfigOptions:
    """The options of one config class in one verb: every field whose metadata does not say
    `"cli": False` (or those in `only`), less `exclude`, with per-verb `defaults`. `take` names
    fields filled from the verb's other options of the same name (e.g. `seed`)."""

    target: str
    only: Names | None = None
    exclude: Names = ()
    take: Names = ()
    defaults: tuple[tuple[str, Any], ...] = ()

    def fields(self) -> list[ConfigField]:
        """The fields this verb shows as options."""
        return [
            f
            for f in config_fields(self.target)
            if (f.name in self.only if self.only is not None else f.meta.get("cli", True))
            and f.name not in self.exclude
            and f.name not in self.take
        ]

    def parameters(self) -> list[inspect.Parameter]:
        """The fields as Typer parameters (type, default, flags and help from the field)."""
        given = dict(self.defaults)
        return [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=_cli_default(f, given.get(f.name, f.default)),
                annotation=Annotated[_cli_type(f), _option(f)],
            )
            for f in self.fields()
        ]

    def build(self, values: dict[str, Any]) -> Any:
        """The config from the parsed values; its validation errors name the flag, not the
        field (the one place that maps them)."""
        module, _, name = self.target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        shown = {f.name: f for f in self.fields()}
        kwargs = {n: _config_value(f, values[n]) for n, f in shown.items()}
        kwargs |= {n: values[n] for n in self.take}
        try:
            return cls(**kwargs)
        except CompressError as e:
            field, _, rest = str(e.args[0]).partition(" ")
            if field in shown and rest:
                e.args = (f"{long_flag(field, shown[field].meta)} {rest}", *e.args[1:])
            raise


def options_from(
    target: str, *, only: Names | None = None, exclude: Names = (), take: Names = (), **kw: Any
) -> Any:
    """A verb parameter's default: :func:`with_groups` spreads the config's fields into options
    and hands the verb the built config (typed Any: the verb imports the class only to type)."""
    return ConfigOptions(target, only, exclude, take, tuple(kw.items()))  # kw: per-verb defaults


def _option(f: ConfigField) -> Any:
    flag = f.meta.get("flag")
    decls = [flag] if isinstance(flag, str) else list(flag or ())
    return typer.Option(
        *decls,
        help=f.meta["help"],
        show_default=f.meta.get("show_default", True),
        hidden=f.meta.get("hidden", False),
    )


def _cli_type(f: ConfigField) -> Any:
    """The type the flag parses: a field's scalar type; str for unions and comma lists."""
    form = f.meta.get("cli")
    if form in _LISTS:
        return list[str] | None
    kinds = [k.strip() for k in f.annotation.split("|")]
    optional = "None" in kinds or f.default is None
    kinds = [k for k in kinds if k != "None"]
    base = _SCALARS[kinds[0]] if len(kinds) == 1 and kinds[0] in _SCALARS else str
    return base | None if optional else base


def _cli_default(f: ConfigField, value: Any) -> Any:
    form = f.meta.get("cli")
    if value is None or value is MISSING:
        return None
    if form in _CSV:
        return ",".join(str(v) for v in value)
    if form in _LISTS:
        return [str(v) for v in value] or None
    return str(value) if _cli_type(f) in (str, str | None) else value


def _config_value(f: ConfigField, value: Any) -> Any:
    """A parsed option as the config field takes it (a comma list as a tuple, ...)."""
    form, flag = f.meta.get("cli"), long_flag(f.name, f.meta)
    if value is None:
        return f.default if form in _LISTS else None
    if form == "repeat":
        return list(value) if f.annotation.startswith("list") else tuple(value)
    if form == "pairs":
        return pairs(value, flag, f.meta.get("shape", "NAME=N"))
    if form in _CSV:
        words = tuple(w for w in value.replace(" ", "").split(",") if w)
        if not words:
            raise UsageError(f"{flag} is empty")
        if form == "csv":
            return words
        cast, kind = (int, "integers") if form == "csv-int" else (float, "numbers")
        try:
            return tuple(cast(w) for w in words)
        except ValueError:
            raise UsageError(f"{flag} must be comma-separated {kind}, got {value!r}") from None
    return value


def pairs(items: list[str], flag: str, shape: str = "NAME=N") -> dict[str, int]:
    """NAME=N pairs of a repeatable option (--layer-bits, --layer-rank); a malformed one is a
    usage error (one line)."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, n = item.rpartition("=")
        if not sep or not name or not n.strip().isdigit():
            raise UsageError(f"{flag} takes {shape}, got {item!r}")
        out[name] = int(n)
    return out


VERBS: dict[str, Callable[..., Any]] = {}  # `compress NAME` -> its function, filled by @verb


def verb(name: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Declare `fn` the command `compress NAME` (app.py registers it with :func:`with_groups`)."""
    return lambda fn: VERBS.setdefault(name, fn)


def with_groups(fn: Callable[..., R]) -> Callable[..., R]:
    """Let Typer see each group parameter of `fn` (a :class:`ConfigOptions` default) as the
    config's fields; `fn` gets the built config. Report files are checked first. Groups may
    share an option (one flag)."""
    sig = inspect.signature(fn)
    params: dict[str, inspect.Parameter] = {}
    groups: dict[str, Callable[[dict[str, Any]], Any]] = {}
    for p in sig.parameters.values():
        if isinstance(p.default, ConfigOptions):
            groups[p.name], own = p.default.build, p.default.parameters()
        else:
            ann = p.annotation  # a string (postponed annotations): Typer needs the type
            ann = eval(ann, fn.__globals__) if isinstance(ann, str) else ann
            own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=ann)]
        for q in own:
            params.setdefault(q.name, q)
    shown = list(params.values())

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> R:
        check_output_files(kwargs)
        built = {name: make(kwargs) for name, make in groups.items()}
        return fn(**{k: v for k, v in kwargs.items() if k in sig.parameters}, **built)

    wrapper.__signature__ = sig.replace(parameters=shown)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in shown}
    return wrapper
