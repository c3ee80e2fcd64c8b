"""What a recipe stage is: its kind (inputs, output, configs, runner), the shared context and its
outcome; the table of kinds is `compress.pipeline.table.STAGES`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from compress.models.artifacts.artifact import is_artifact, read_card
from compress.models.data.datasets import DataConfig
from compress.models.errors import CompressError
from compress.models.jsontypes import JsonObject
from compress.pipeline.recipe import Recipe, RecipeError
from compress.stages.common import ModelRef


@dataclass
class StageContext:
    """What stages share while a recipe runs."""

    recipe: Recipe
    data: DataConfig
    out: Path
    hooks: Any = None
    current: str = ""
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.current = self.current or self.recipe.model

    def model_ref(self) -> ModelRef:
        """The stage input: the recipe's model (with its weights/shape) or an artifact."""
        ref = ModelRef(self.current, trust_code=self.recipe.trust_code)
        if self.current != self.recipe.model:
            return ref
        return dataclasses.replace(ref, weights=self.recipe.weights, **self.recipe.shape)

    def artifact_of(self, stage: str) -> str:
        for r in self.artifacts:
            if stage in (r["stage"], r["kind"]):
                return str(r["artifact"])
        raise CompressError(f"no earlier stage {stage!r} produced a model")


@dataclass
class StageOutcome:
    """What a stage produced, in the fields the pipeline record and report use."""

    artifact: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def record(self) -> JsonObject:
        rec = dataclasses.asdict(self)
        if self.artifact and is_artifact(self.artifact):
            card = read_card(self.artifact)
            rec |= {
                "model_kind": card.kind,
                "precision": card.precision,
                "bytes": sum(f["bytes"] for f in card.files.values()),
                "val_top1": _top1(card.metrics, "val"),
                "test_top1": _top1(card.metrics, "test"),
                "params": card.model_extra.get("params") if card.model_extra else None,
            }
        return rec


def _top1(metrics: dict[str, Any], split: str) -> float | None:
    m = metrics.get(split)
    return float(m["top1"]) if isinstance(m, dict) and "top1" in m else None


@dataclass
class StageConfig:
    """A stage's validated options: one config per part, keyed by the stage name that spells
    those options in a recipe ("train", "prune", ...: a prune stage has "prune" and "finetune",
    a distill stage "distill" and "train"), and the stage's own keys (`teacher`, `latency`)."""

    configs: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.configs[name]


Runner = Callable[[StageContext, StageConfig, Path, bool], StageOutcome]
Keywords = Callable[[StageContext, StageConfig], dict[str, Any]]  # a verb's own keyword arguments


def verb(name: str, keywords: Keywords = lambda ctx, config: {"hooks": ctx.hooks}) -> Runner:
    """A stage that calls `compress.stages.NAME.run_NAME` on the run's current model: the
    function `compress NAME` calls, so the verb and the recipe stage do the same thing."""

    def run(ctx: StageContext, config: StageConfig, folder: Path, overwrite: bool) -> StageOutcome:
        fn = getattr(import_module(f"compress.stages.{name}"), f"run_{name}")
        kw = keywords(ctx, config)
        lead = [kw.pop("teacher")] if "teacher" in kw else []  # distill: teacher, then student
        summary = fn(
            *lead, ctx.model_ref(), folder, config[name], ctx.data, overwrite=overwrite, **kw
        )
        return StageOutcome(str(folder), _brief(summary.to_dict()))

    return run


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """Keep the small, JSON-friendly part of a stage summary for the record."""
    small = (int, float, str, bool, type(None))
    return {
        k: v
        for k, v in summary.items()
        if isinstance(v, small) or (isinstance(v, dict) and len(str(v)) < 4000)
    }


@dataclass
class StageKind:
    """A stage type: option classes, accepted input kinds, output kind, runner."""

    name: str
    configs: dict[str, type]  # the stage name that spells a config's options -> its class
    consumes: frozenset[str]
    produces: str  # "pytorch", "onnx" or "report"
    runner: Runner | None = None  # None: `verb(name)`, the stage function of that name
    extra_keys: frozenset[str] = frozenset()
    needs_trained: bool = False
    hash_extra: Callable[[StageConfig, StageContext], dict[str, Any]] = lambda cfg, ctx: {}
    main_rank_only: bool = False  # under torchrun: rank 0 runs it, the others get its outcome
    # What the stage runs with, from the built configs and the options given (default: as built).
    finish: Callable[[StageConfig, dict[str, Any], str], StageConfig] | None = None

    def validate(self, options: dict[str, Any], where: str) -> StageConfig:
        """Split options among the config classes by field name; build and validate each."""
        built = build_configs(self.configs, options, where, self.extra_keys)
        return self.finish(built, options, where) if self.finish else built

    def run(
        self, ctx: StageContext, config: StageConfig, folder: Path, overwrite: bool
    ) -> StageOutcome:
        runner = self.runner or verb(self.name)
        if self.main_rank_only:
            from compress.distributed.collectives import on_main

            return on_main(lambda: runner(ctx, config, folder, overwrite))
        return runner(ctx, config, folder, overwrite)


def build_configs(
    classes: dict[str, type],
    options: dict[str, Any],
    where: str,
    extra_keys: frozenset[str] = frozenset(),
) -> StageConfig:
    """Split `options` among the config classes by field name (the first class that has it)."""
    from pydantic import TypeAdapter, ValidationError

    owned: dict[str, dict[str, Any]] = {name: {} for name in classes}
    extras: dict[str, Any] = {}
    for key, value in options.items():
        owner = next((n for n, c in classes.items() if key in field_names(c)), None)
        if owner is not None:
            owned[owner][key] = value
        elif key in extra_keys:
            extras[key] = value
        else:
            allowed = sorted(set().union(*map(field_names, classes.values())) | extra_keys)
            raise RecipeError(f"{where}: unknown option {key!r}; allowed: {', '.join(allowed)}")
    built = StageConfig({}, extras)
    for name, kwargs in owned.items():
        try:
            built.configs[name] = TypeAdapter(classes[name]).validate_python(kwargs)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise RecipeError(f"{where}: option {key!r}: {err['msg']}") from e
    return built


def field_names(config: Any) -> set[str]:
    """The field names of a config dataclass (or of one of its instances)."""
    return {f.name for f in dataclasses.fields(config)}
