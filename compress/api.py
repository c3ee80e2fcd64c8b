"""The Python API: one public function per verb, artifact in, artifact out; each CLI verb
calls its function here (`compress train` -> :func:`train`, `compress eval` -> :func:`evaluate`,
`compress run` -> :func:`run_recipe`, ...), so the CLI and `import compress` run one code path.

`compress.train("lenet5", "runs/lenet5", TrainConfig(epochs=12))`: a model is a zoo name, an
artifact directory, `path/to/file.py:factory` or a :class:`ModelRef` (weights, shape options);
every function writes its artifact atomically and returns the summary stored in its card.
`import compress` stays cheap: these load (with torch) on first use, through the package's
module `__getattr__`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compress.distillation.distill import DistillConfig
from compress.distributed import group as ddp
from compress.export.bench.measure import BenchConfig, BenchReport
from compress.export.bench.measure import Progress as BenchProgress
from compress.export.doctor.diagnosis import Diagnosis
from compress.export.onnx.convert import ExportConfig
from compress.factorization.svd import FactorizeConfig
from compress.models.data.datasets import DataConfig
from compress.pipeline.recipe import Recipe, apply_override, load_recipe
from compress.pipeline.report import write_report
from compress.pipeline.runner import PipelineResult, Progress, run_pipeline
from compress.pipeline.tune import TuneConfig, TuneResult
from compress.pipeline.tune import tune as run_tune
from compress.pruning.config import PruneConfig
from compress.pruning.sensitivity import SensitivityConfig, SensitivityResult
from compress.quantization.context import QuantizeConfig
from compress.stages.bench import run_bench, run_doctor
from compress.stages.common import ModelRef
from compress.stages.deploy import DeployConfig, DeployResult
from compress.stages.deploy import deploy as run_deploy
from compress.stages.distill import run_distill
from compress.stages.evaluate import EvalReport, run_eval
from compress.stages.export import run_export
from compress.stages.factorize import run_factorize
from compress.stages.predict import Prediction
from compress.stages.predict import predict as run_predict
from compress.stages.prune import run_prune, run_sensitivity
from compress.stages.quantize import run_quantize
from compress.stages.results import (
    DistillSummary,
    ExportSummary,
    FactorizeSummary,
    PruneSummary,
    QuantizeSummary,
    TrainSummary,
)
from compress.stages.train import run_train
from compress.training.config import Hooks, TrainConfig

Model = str | Path | ModelRef


def model_ref(model: Model) -> ModelRef:
    """A :class:`ModelRef` for a zoo name, artifact directory or `file.py:factory`."""
    return model if isinstance(model, ModelRef) else ModelRef(str(model))


def train(
    model: Model,
    out: str | Path,
    config: TrainConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> TrainSummary:
    """Train `model` and write the artifact `out` (val and test metrics in its card)."""
    cfg = config or TrainConfig()
    return run_train(model_ref(model), cfg, data, out, overwrite=overwrite, hooks=hooks)


def prune(
    model: Model,
    out: str | Path,
    config: PruneConfig | None = None,
    data: DataConfig | None = None,
    *,
    finetune: TrainConfig | Mapping[str, Any] | None = None,
    latency: bool = True,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> PruneSummary:
    """Prune `model` structurally (channels removed), fine-tune, write `out`.

    The fine-tuning is decided by `compress.pruning.policy.plan_finetune`, as for the CLI and
    recipes: `finetune` is a TrainConfig used whole (its epochs, LR, schedule), a mapping of
    training keys over the default recipe (`{"lr": 2e-3}`), or None (5 epochs of KD where the
    model's training data is known; `PruneConfig(finetune_epochs=0)` skips it)."""
    return run_prune(
        model_ref(model),
        config or PruneConfig(),
        data,
        out,
        overwrite=overwrite,
        finetune=finetune,
        latency=latency,
        hooks=hooks,
    )


def distill(
    teacher: Model,
    student: Model,
    out: str | Path,
    config: DistillConfig | None = None,
    data: DataConfig | None = None,
    *,
    train: TrainConfig | None = None,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> DistillSummary:
    """Train `student` from `teacher`'s soft labels (knowledge distillation), write `out`."""
    return run_distill(
        model_ref(teacher),
        model_ref(student),
        config or DistillConfig(),
        data,
        out,
        train_cfg=train,
        overwrite=overwrite,
        hooks=hooks,
    )


def quantize(
    model: Model,
    out: str | Path,
    config: QuantizeConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> QuantizeSummary:
    """Quantize `model` (PyTorch or ONNX artifact) into the ONNX artifact `out` (`hooks`
    follow QAT's fine-tuning)."""
    cfg = config or QuantizeConfig()
    return run_quantize(model_ref(model), cfg, data, out, overwrite=overwrite, hooks=hooks)


def export_onnx(
    model: Model,
    out: str | Path,
    config: ExportConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
) -> ExportSummary:
    """Export `model` to a parity-checked ONNX artifact `out`."""
    cfg = config or ExportConfig()
    return run_export(model_ref(model), cfg, data, out, overwrite=overwrite)


def factorize(
    model: Model,
    out: str | Path,
    config: FactorizeConfig | None = None,
    data: DataConfig | None = None,
    *,
    train: TrainConfig | None = None,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> FactorizeSummary:
    """Replace `model`'s Linear layers by truncated SVDs, fine-tune with KD, write `out`."""
    return run_factorize(
        model_ref(model),
        config or FactorizeConfig(),
        data,
        out,
        train_cfg=train,
        overwrite=overwrite,
        hooks=hooks,
    )


def sensitivity(
    model: Model,
    out: str | Path,
    config: SensitivityConfig | None = None,
    data: DataConfig | None = None,
    *,
    val_limit: int | None = 2000,
    overwrite: bool = False,
) -> SensitivityResult:
    """Prune each layer alone at a few ratios; the report (json, md, png) goes to `out`."""
    cfg = config or SensitivityConfig()
    return run_sensitivity(
        model_ref(model), cfg, data, out, overwrite=overwrite, val_limit=val_limit
    )


def evaluate(
    model: Model,
    data: DataConfig | None = None,
    split: str = "test",
    limit: int | None = None,
    *,
    runtime: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
) -> EvalReport:
    """Top-1, top-5, loss, per-class accuracy of `model` on `split`, measured on `runtime`."""
    return run_eval(
        model_ref(model), data, split, limit, runtime=runtime, precision=precision, threads=threads
    )


def bench(
    models: list[Model],
    config: BenchConfig | None = None,
    data: DataConfig | None = None,
    *,
    progress: BenchProgress | None = None,
) -> BenchReport:
    """Latency of every model on every runtime and batch size of `config` (`progress` gets
    (done, total, what) as cases finish)."""
    refs = [model_ref(m) for m in models]
    return run_bench(refs, config or BenchConfig(), data, progress=progress)


def doctor(
    model: Model, runtime: str = "ort-cpu", threads: int | None = None, *, rank: bool = False
) -> Diagnosis:
    """Why `model` is or isn't fast on `runtime` here: findings, each with a suggestion;
    `rank` also times every ONNX runtime x precision and names the fastest."""
    return run_doctor(model_ref(model), runtime, threads, rank=rank)


def deploy(
    model: Model,
    out: str | Path,
    config: DeployConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DeployResult:
    """Measure `model` on every runtime x precision x threads here, keep those within the
    accuracy gate, and write the fastest to `out` (model files + deploy.json)."""
    cfg = config or DeployConfig()
    return run_deploy(model_ref(model), cfg, out, data, overwrite=overwrite, progress=progress)


def predict(model: str | Path, images: Sequence[str | Path], top_k: int = 3) -> list[Prediction]:
    """The `top_k` classes of each image (files or folders) from a `deploy` directory, on the
    runtime, precision and threads deploy chose."""
    return run_predict(model, images, top_k=top_k)


def tune(
    recipe: str | Path | Recipe,
    out: str | Path,
    config: TuneConfig | None = None,
    *,
    overrides: list[str] | None = None,
    trust_code: bool = False,
    hooks: Hooks | None = None,
) -> TuneResult:
    """Search the recipe's `search:` space (Optuna, multi-objective) into `out`: the Pareto
    front, pareto.png and best-*.yaml; a second search into `out` continues the study."""
    rec = _recipe(recipe, overrides, trust_code)
    return run_tune(rec, config or TuneConfig(), out, hooks=hooks)


def _recipe(recipe: str | Path | Recipe, overrides: list[str] | None, trust_code: bool) -> Recipe:
    """A parsed recipe (a copy when given one) with `overrides` applied."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    else:
        recipe = copy.deepcopy(recipe)
        for item in overrides or []:
            apply_override(recipe, item)
    recipe.trust_code = recipe.trust_code or trust_code
    return recipe


def run_recipe(
    recipe: str | Path | Recipe,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    trust_code: bool = False,
    progress: Progress | None = None,
    hooks: Hooks | None = None,
) -> PipelineResult:
    """Run a recipe file (or a parsed :class:`Recipe`) into `out` and write
    `out/report.{md,json,html}` (rank 0 under torchrun; `result.report` holds its rows, headline and paths). `compress
    run` is this call. `resume` skips finished stages (a missing `out` starts afresh, with a
    warning); `trust_code` lets the recipe's model run the factory it names."""
    recipe = _recipe(recipe, overrides, trust_code)
    result = run_pipeline(
        recipe, out, resume=resume, overwrite=overwrite, progress=progress, hooks=hooks
    )
    if ddp.is_main():
        result.report = write_report(result, recipe.name, Path(out))
    return result
