"""The Python API: one function per verb, artifact in, artifact out. Each CLI verb calls its
function here (`compress eval` -> :func:`evaluate`, `compress run` -> :func:`run_recipe`, ...),
and each is the `compress.stages` function recipes run too: one code path. A model is a zoo
name, an artifact directory, `path/to/file.py:factory` or a :class:`ModelRef`; every function
writes its artifact atomically and returns the summary stored in its card.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from compress.distributed import group as ddp
from compress.pipeline.recipe import Recipe, apply_override, load_recipe
from compress.pipeline.report import write_report
from compress.pipeline.runner import PipelineResult, Progress, RunConfig, plan, run_pipeline
from compress.pipeline.tune import TuneConfig, TuneResult
from compress.pipeline.tune import tune as run_tune
from compress.stages.bench import run_bench as bench
from compress.stages.bench import run_doctor as doctor
from compress.stages.common import Model, model_ref
from compress.stages.deploy import deploy
from compress.stages.distill import run_distill as distill
from compress.stages.evaluate import run_eval as evaluate
from compress.stages.export import run_export as export_onnx
from compress.stages.factorize import run_factorize as factorize
from compress.stages.predict import predict
from compress.stages.prune import run_prune as prune
from compress.stages.prune import run_sensitivity as sensitivity
from compress.stages.quantize import run_quantize as quantize
from compress.stages.train import run_train as train
from compress.training.config import Hooks

__all__ = [
    "Model",
    "bench",
    "deploy",
    "distill",
    "doctor",
    "evaluate",
    "export_onnx",
    "factorize",
    "model_ref",
    "predict",
    "prune",
    "quantize",
    "run_recipe",
    "sensitivity",
    "train",
    "tune",
]


def tune(
    recipe: str | Path | Recipe,
    out: str | Path,
    config: TuneConfig | None = None,
    *,
    trust_code: bool = False,
    hooks: Hooks | None = None,
    **options: Any,
) -> TuneResult:
    """Search the recipe's `search:` space (Optuna, multi-objective) into `out`: the Pareto
    front, pareto.png and best-*.yaml; a second search continues the study. `options` override
    `config`'s fields (`overrides=[...]`, `trials=20`)."""
    cfg = replace(config or TuneConfig(), **options)
    return run_tune(_recipe(recipe, cfg.overrides, trust_code), cfg, out, hooks=hooks)


def _recipe(recipe: str | Path | Recipe, overrides: list[str] | None, trust_code: bool) -> Recipe:
    """A parsed recipe (a copy when given one) with `overrides` applied."""
    recipe = copy.deepcopy(recipe) if isinstance(recipe, Recipe) else load_recipe(recipe)
    for item in overrides or []:
        apply_override(recipe, item)
    recipe.trust_code = recipe.trust_code or trust_code
    return recipe


def run_recipe(
    recipe: str | Path | Recipe,
    out: str | Path,
    config: RunConfig | None = None,
    *,
    overwrite: bool = False,
    trust_code: bool = False,
    progress: Progress | None = None,
    hooks: Hooks | None = None,
    **options: Any,
) -> PipelineResult:
    """Run a recipe file (or a parsed :class:`Recipe`) into `out` and write `out/report.{md,json,
    html}` (rank 0; `result.report` holds its rows, headline and paths). `options` override
    `config`'s fields (`overrides=[...]`, `resume=True`); `dry_run` only plans (result.stages)."""
    cfg = replace(config or RunConfig(), **options)
    recipe = _recipe(recipe, cfg.overrides, trust_code)
    if cfg.dry_run:
        return PipelineResult(str(out), [s.to_dict() for s in plan(recipe)])
    result = run_pipeline(
        recipe, out, resume=cfg.resume, overwrite=overwrite, progress=progress, hooks=hooks
    )
    if ddp.is_main():
        result.report = write_report(result, recipe.name, Path(out))
    return result
