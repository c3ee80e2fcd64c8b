"""Adapters from recipe stages to the stage functions the CLI verbs call (one code path), and
`STAGES`, the table of stage kinds by name (built on first use)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, replace
from functools import cache
from pathlib import Path
from typing import Any

from compress.models.artifacts.artifact import read_card
from compress.models.notes import texts
from compress.pipeline.kinds import (
    StageConfig,
    StageContext,
    StageKind,
    StageOutcome,
    field_names,
    verb,
)
from compress.pipeline.recipe import RecipeError
from compress.stages.common import ModelRef


def _prune_keywords(ctx: StageContext, config: StageConfig) -> dict[str, Any]:
    return {"finetune": config["finetune"], "hooks": ctx.hooks}


def _teacher(ctx: StageContext, config: StageConfig) -> str:
    """The distill stage's teacher: the stage `teacher:` names, else the run's first model."""
    teacher = config.extra.get("teacher")
    return ctx.artifact_of(teacher) if teacher else str(ctx.artifacts[0]["artifact"])


def _distill_keywords(ctx: StageContext, config: StageConfig) -> dict[str, Any]:
    teacher = ModelRef(model=_teacher(ctx, config), trust_code=ctx.recipe.trust_code)
    return {"teacher": teacher, "train": config["train"], "hooks": ctx.hooks}


def _distill_hash(config: StageConfig, ctx: StageContext) -> dict[str, Any]:
    return {"teacher": read_card(_teacher(ctx, config)).content_hash} if ctx.artifacts else {}


def _prune_finish(built: StageConfig, options: dict[str, Any], where: str) -> StageConfig:
    """A prune stage fine-tunes like `compress prune`: the training keys the stage sets (lr, amp,
    optimizer, ...) go to the one fine-tuning policy (`compress.pruning.policy.plan_finetune`),
    which the stage function calls; checked here so a bad key fails before anything runs."""
    from compress.models.errors import UsageError
    from compress.pruning.policy import plan_finetune

    prune_cfg, train_cfg = built["prune"], built.configs.pop("train")
    # seed, label_smoothing: the pruning's own
    train_keys = field_names(train_cfg) - field_names(prune_cfg)
    given = {k: getattr(train_cfg, k) for k in options if k in train_keys}
    try:
        plan_finetune(prune_cfg, given)
    except UsageError as e:
        raise RecipeError(f"{where}: {e}") from None
    built.configs["finetune"] = given  # the request; the input hash sees it and the input's content
    return built


def _bench_hash(config: StageConfig, ctx: StageContext) -> dict[str, Any]:
    return {"models": [read_card(str(r["artifact"])).content_hash for r in ctx.artifacts]}


def _run_bench(
    ctx: StageContext, config: StageConfig, folder: Path, overwrite: bool
) -> StageOutcome:
    """Benchmark every model the run produced so far, on the same runtimes and batch sizes."""
    from compress.export.bench.report import write_reports
    from compress.models.artifacts.artifact import atomic_dir
    from compress.stages.bench import run_bench

    trust = ctx.recipe.trust_code
    refs = [ModelRef(model=str(r["artifact"]), trust_code=trust) for r in ctx.artifacts]
    if not refs:
        raise RecipeError("bench: no earlier stage produced a model to measure")
    report = run_bench(refs, config["bench"], ctx.data)
    doc = report.to_dict()
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        write_reports(
            report,
            json_path=tmp / "bench.json",
            csv_path=tmp / "bench.csv",
            md_path=tmp / "bench.md",
            plot_path=tmp / "latency.png",
        )
    latency: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for c in report.results:
        keep = {k: getattr(c, k) for k in ("p50_ms", "p90_ms", "throughput")}
        latency.setdefault(c.model, {}).setdefault(c.runtime, {})[str(c.batch_size)] = keep
    return StageOutcome(
        None,
        {
            "latency": latency,
            "notes": texts(report.notes),
            "environment": report.environment,
            "cases": doc["results"],  # what the report's rows and baselines are built from
            "models": doc["models"],
        },
        files=[str(folder / f) for f in ("bench.json", "bench.md", "latency.png")],
    )


def _run_deploy(
    ctx: StageContext, config: StageConfig, folder: Path, overwrite: bool
) -> StageOutcome:
    """Deploy the latest model of the run on the fastest runtime x precision within the gate."""
    from compress.stages.deploy import MANIFEST, deploy

    if not ctx.artifacts:
        raise RecipeError("deploy: no earlier stage produced a model to deploy")
    cfg = config["deploy"]
    first = str(ctx.artifacts[0]["artifact"])
    compare = bool(config.extra.get("vs_baseline", True))
    if compare and cfg.baseline is None and first != ctx.current:
        cfg = replace(cfg, baseline=first)  # speed-ups vs the run's dense model
    result = deploy(ctx.model_ref(), folder, cfg, ctx.data, overwrite=overwrite)
    best = result.chosen
    return StageOutcome(
        None,
        {
            "deployed": str(folder),
            "runtime": best.case.runtime,
            "precision": best.case.precision,
            "threads": best.case.threads,
            "val_top1": best.val_top1,
            "latency": best.to_dict()["latency"],
            "candidates": len(result.candidates),
            "speedup": asdict(result.speedup) if result.speedup else None,
        },
        files=[str(folder / MANIFEST)],
    )


def _deploy_hash(config: StageConfig, ctx: StageContext) -> dict[str, Any]:
    """The baseline the speed-ups are measured against is an input too."""
    if not ctx.artifacts:
        return {}
    return {"baseline": read_card(str(ctx.artifacts[0]["artifact"])).content_hash}


_SOURCE, _BUILT = frozenset({"source", "pytorch"}), frozenset({"pytorch", "onnx"})


def _model_kinds() -> list[StageKind]:
    """Stages that train or reshape the PyTorch model."""
    from compress.distillation.distill import DistillConfig
    from compress.factorization.svd import FactorizeConfig
    from compress.pruning.prune import PruneConfig
    from compress.training.fit import TrainConfig

    return [
        StageKind("train", {"train": TrainConfig}, _SOURCE, "pytorch"),
        StageKind(
            "distill",
            {"distill": DistillConfig, "train": TrainConfig},
            _SOURCE,
            "pytorch",
            verb("distill", _distill_keywords),
            frozenset({"teacher"}),
            hash_extra=_distill_hash,
        ),
        StageKind(
            "prune",
            {"prune": PruneConfig, "train": TrainConfig},
            _SOURCE,
            "pytorch",
            verb("prune", _prune_keywords),
            needs_trained=True,
            finish=_prune_finish,
        ),
        StageKind(
            "factorize", {"factorize": FactorizeConfig}, _SOURCE, "pytorch", needs_trained=True
        ),
    ]


def _artifact_kinds() -> list[StageKind]:
    """Stages that turn the model into ONNX files or measurements, then deploy it: the run's
    last model on the fastest runtime x precision x threads."""
    from compress.export.bench.measure import BenchConfig
    from compress.export.onnx.convert import ExportConfig
    from compress.quantization.quantize import QuantizeConfig
    from compress.stages.deploy import DeployConfig

    return [
        StageKind(
            "export",
            {"export": ExportConfig},
            _SOURCE,
            "onnx",
            verb("export", lambda ctx, config: {}),
            needs_trained=True,
            main_rank_only=True,
        ),
        StageKind(
            "quantize", {"quantize": QuantizeConfig}, _SOURCE | {"onnx"}, "onnx", needs_trained=True
        ),
        StageKind(
            "bench",
            {"bench": BenchConfig},
            _BUILT,
            "report",
            _run_bench,
            hash_extra=_bench_hash,
            main_rank_only=True,
        ),
        StageKind(
            "deploy",
            {"deploy": DeployConfig},
            _BUILT,
            "report",
            _run_deploy,
            frozenset({"vs_baseline"}),
            hash_extra=_deploy_hash,
            main_rank_only=True,
        ),
    ]


@cache
def _kinds() -> dict[str, StageKind]:
    return {k.name: k for k in (*_model_kinds(), *_artifact_kinds())}


class _LazyTable(Mapping[str, StageKind]):
    """Built on first use, so importing the pipeline stays cheap. Every read (`[]`, `get`, `in`,
    iteration, `len`) goes through `__getitem__`/`__iter__`/`__len__`, which build it first."""

    def __getitem__(self, key: str) -> StageKind:
        return _kinds()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_kinds())

    def __len__(self) -> int:
        return len(_kinds())


STAGES: Mapping[str, StageKind] = _LazyTable()
