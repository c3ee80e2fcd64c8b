"""Compression search with Optuna over a recipe's `search:` space, e.g.
`{prune.ratio: {low: 0.3, high: 0.8}, distill.epochs: {low: 1, high: 4, type: int}}`. Trials run
into OUT/trials/NNNN; objectives: val accuracy (max), bench p50 at batch 1 (min), size (min); a
failed gate prunes the trial. The study lives in `--storage` (SQLite), so tunes resume and share."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.models.artifacts.artifact import check_writable
from compress.models.errors import QualityGateError, UsageError
from compress.models.options import option
from compress.pipeline.recipe import Recipe, RecipeError, apply_override, dump_recipe
from compress.stages.frame import stage_output

log = logging.getLogger(__name__)
OBJECTIVES: dict[str, Any] = {"accuracy": "maximize", "latency": "minimize", "size": "minimize"}
SAMPLERS = {"tpe": "TPESampler", "nsga2": "NSGAIISampler", "random": "RandomSampler"}  # optuna's


@dataclass
class TuneConfig:
    """How long to search and for what."""

    trials: int = option(10, "Trials in total (counting earlier runs).")
    objectives: tuple[str, ...] = option(
        ("accuracy", "latency"),
        "Comma list from accuracy (validation top-1), latency (bench p50, batch 1), size.",
        cli="csv",
    )
    storage: str | None = option(
        None,
        "Optuna storage URL (default sqlite:///OUT/study.db); share it to "
        "cooperate across processes or machines.",
    )
    study_name: str | None = option(None, "Study name (default: recipe name).")
    timeout: float | None = option(None, "Stop after this many seconds.")
    seed: int = option(0, "Sampler seed.")
    # auto: TPE for one objective, NSGA-II for several
    sampler: str = option("auto", "auto, tpe, nsga2 or random.")
    overrides: list[str] = option(
        help="Override recipe options for every trial (e.g. a smaller budget: data.limit=10000).",
        factory=list,
        flag="--set",
        cli="repeat",
    )  # applied by `compress.tune` before the search

    def __post_init__(self) -> None:
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise UsageError(f"--objectives must be a subset of {', '.join(OBJECTIVES)}")
        if self.trials < 1:
            raise UsageError("--trials must be >= 1")
        if self.sampler not in ("auto", *SAMPLERS):
            raise UsageError("--sampler must be auto, tpe, nsga2 or random")


@dataclass
class TuneResult:
    study_name: str
    storage: str
    trials: int
    pareto: list[dict[str, Any]] = field(default_factory=list)
    best_recipes: dict[str, str] = field(default_factory=dict)
    plot: str | None = None


def suggest(trial: Any, key: str, d: Mapping[str, Any]) -> Any:
    """The trial's value for the option `key` of `search:` entry `d` (Optuna's categorical,
    int or float)."""
    if "choices" in d:
        return trial.suggest_categorical(key, list(d["choices"]))
    if d.get("type") == "int" or (isinstance(d["low"], int) and isinstance(d["high"], int)):
        low, high, step = int(d["low"]), int(d["high"]), int(d.get("step", 1))
        return trial.suggest_int(key, low, high, step=step, log=bool(d.get("log")))
    return trial.suggest_float(key, float(d["low"]), float(d["high"]), log=bool(d.get("log")))


def parse_space(recipe: Recipe) -> dict[str, Mapping[str, Any]]:
    """Validate `search:` entries: {low, high[, log, type: int|float, step]} or {choices}."""
    if not recipe.search:
        raise RecipeError(f"{recipe.source}: no `search:` section to tune")
    space: dict[str, Mapping[str, Any]] = {}
    for key, dist in recipe.search.items():
        where = recipe.where(f"search.{key}")
        head, _, opt = str(key).partition(".")
        if not opt:
            raise RecipeError(f"{where}: search key {key!r} must be stage.option")
        recipe.stage(head)  # raises if the stage is unknown
        if not isinstance(dist, dict) or not (
            {"choices"} <= set(dist) or {"low", "high"} <= set(dist)
        ):
            raise RecipeError(f"{where}: {key}: give {{low, high}} or {{choices: [...]}}")
        if "low" in dist and not dist["low"] < dist["high"]:
            raise RecipeError(f"{where}: {key}: low must be < high")
        space[str(key)] = dist
    return space


def storage_url(cfg: TuneConfig, out: Path) -> str:
    """Where the study lives: `cfg.storage`, else a SQLite file in `out`."""
    return cfg.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def open_study(recipe: Recipe, cfg: TuneConfig, out: Path) -> Any:
    """Create or load the study; a bad storage URL fails here, before any training."""
    import optuna

    storage = storage_url(cfg, out)
    multi = len(cfg.objectives) > 1
    kind = cfg.sampler if cfg.sampler != "auto" else ("nsga2" if multi else "tpe")
    sampler = getattr(optuna.samplers, SAMPLERS[kind])(seed=cfg.seed)
    try:
        return optuna.create_study(
            storage=storage,
            study_name=cfg.study_name or recipe.name,
            load_if_exists=True,
            sampler=sampler,
            directions=[OBJECTIVES[o] for o in cfg.objectives],
        )
    except ValueError as e:
        raise UsageError(f"--storage {storage!r}: {e}") from e
    except Exception as e:  # sqlalchemy errors: unreachable database, bad URL
        raise UsageError(
            f"--storage {storage!r} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0]}"
        ) from e


def objectives_of(result: Any, cfg: TuneConfig) -> list[float]:
    """Validation accuracy, bench latency (batch 1, first runtime) and size of the last model."""
    last = next(r for r in reversed(result.stages) if r.get("artifact"))
    bench: dict[str, Any] = next((r for r in reversed(result.stages) if r["kind"] == "bench"), {})
    lat = bench.get("summary", {}).get("latency", {}).get(Path(last["artifact"]).name, {})
    first: dict[str, Any] = next(iter(lat.values()), {})  # the first runtime: {batch: latencies}
    if "latency" in cfg.objectives and "1" not in first:
        raise RecipeError(
            "objective latency needs a bench stage with batch size 1 after the last model stage"
        )
    values = {"accuracy": float(last.get("val_top1") or 0.0), "size": float(last.get("bytes") or 0)}
    return [values[o] if o in values else float(first["1"]["p50_ms"]) for o in cfg.objectives]


def tune(recipe: Recipe, cfg: TuneConfig, out: str | Path, hooks: Any = None) -> TuneResult:
    """Run the search; returns the Pareto front and the paths of the best recipes. `out`
    holds the study: a second search into it continues the first (locked while it runs)."""
    import optuna

    from compress.pipeline.runner import plan, run_pipeline

    with stage_output(out, overwrite=False, check=False, collective=False):
        out = Path(out)
        check_writable(out)
        out.mkdir(parents=True, exist_ok=True)
        space = parse_space(recipe)
        if "latency" in cfg.objectives and not any(s.kind == "bench" for s in recipe.stages):
            raise RecipeError(f"{recipe.source}: objective latency needs a bench stage")
        plan(recipe)  # the base recipe must be valid before any trial
        study = open_study(recipe, cfg, out)

        def objective(trial: Any) -> list[float] | float:
            trial_recipe = copy.deepcopy(recipe)
            for key, dist in space.items():
                apply_override(trial_recipe, f"{key}={suggest(trial, key, dist)!r}")
            folder = out / "trials" / f"{trial.number:04d}"
            try:
                result = run_pipeline(trial_recipe, folder, overwrite=True, hooks=hooks)
            except QualityGateError as e:
                log.info("trial %d pruned: %s", trial.number, e)
                raise optuna.TrialPruned(str(e)) from e
            trial.set_user_attr("folder", str(folder))
            values = objectives_of(result, cfg)
            return values if len(values) > 1 else values[0]

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        remaining = cfg.trials - sum(t.state.is_finished() for t in study.trials)
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, timeout=cfg.timeout)
        return _summarize(study, recipe, space, cfg, out)


def _summarize(
    study: Any, recipe: Recipe, space: dict[str, Mapping[str, Any]], cfg: TuneConfig, out: Path
) -> TuneResult:
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    res = TuneResult(study.study_name, storage_url(cfg, out), len(study.trials))
    if not complete:
        return res
    front = study.best_trials
    res.pareto = [
        {
            "trial": t.number,
            "params": t.params,
            **dict(zip(cfg.objectives, t.values, strict=True)),
            "folder": t.user_attrs.get("folder"),
        }
        for t in front
    ]
    for i, obj in enumerate(cfg.objectives):
        sign = -1 if OBJECTIVES[obj] == "maximize" else 1
        best = min(complete, key=lambda t: float(sign * t.values[i]))
        r = copy.deepcopy(recipe)
        r.search = {}
        for key, value in best.params.items():
            if key in space:  # a shared storage may hold anything; apply only our search keys
                apply_override(r, f"{key}={value!r}")
        path = dump_recipe(
            r,
            out / f"best-{obj}.yaml",
            header=f"best {obj} from study {study.study_name} trial "
            f"{best.number}: {dict(zip(cfg.objectives, best.values, strict=True))}",
        )
        res.best_recipes[obj] = str(path)
    res.plot = str(_plot(complete, front, cfg, out)) if len(cfg.objectives) > 1 else None
    return res


def _plot(trials: list[Any], front: list[Any], cfg: TuneConfig, out: Path) -> Path:
    from compress.export.bench.report import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(6, 4))
    for shown, color, label in ((trials, "lightgray", "trials"), (front, "C3", "Pareto front")):
        ax.scatter([t.values[1] for t in shown], [t.values[0] for t in shown], c=color, label=label)
    ax.set_xlabel(cfg.objectives[1])
    ax.set_ylabel(cfg.objectives[0])
    ax.legend()
    return save_figure(fig, out / "pareto.png")
