"""Run a recipe: validate the whole plan, then each stage into `OUT/NN-name/` atomically, with
`stage.json` holding its input hash (`--resume` skips unchanged complete stages; older formats
re-run). Gates (`max_drop`, val top-1 points vs the baseline) run per stage and for the run.
Under torchrun every rank runs the plan; rank 0 alone checks the folder and writes the records."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.models.artifacts.artifact import check_out_dir, is_artifact, model_code, read_card
from compress.models.data.datasets import DataConfig
from compress.models.disk.durable import write_text
from compress.models.errors import QualityGateError
from compress.models.jsontypes import JsonObject
from compress.models.options import option
from compress.models.zoo.registry import is_factory_ref
from compress.models.zoo.usercode import check_consent, read_source, sha256_bytes
from compress.pipeline.kinds import StageConfig, StageContext, StageKind, StageOutcome
from compress.pipeline.recipe import Recipe, RecipeError, StageSpec
from compress.pipeline.table import STAGES
from compress.stages.frame import stage_output

if TYPE_CHECKING:
    from compress.pipeline.report import RunReport

log = logging.getLogger(__name__)
RECORD = "stage.json"
# 2: options hashed by stage name ("train"), not config class ("TrainConfig").
RECORD_FORMAT = 2
Progress = Callable[[str, int, int], None]  # (stage name, index, total)


@dataclass
class RunConfig:
    """How `compress.run_recipe` runs a recipe: overrides, plan only, or resume."""

    overrides: list[str] = option(
        help="Override a recipe option: stage.key=value (value in YAML), data.key=value, "
        "max_drop=value. Repeatable.",
        factory=list,
        flag="--set",
        cli="repeat",
    )
    dry_run: bool = option(
        False, "Validate and print the resolved plan; train nothing.", flag="--dry-run"
    )
    resume: bool = option(
        False,
        "Skip stages whose artifacts are complete and whose inputs are unchanged "
        "(an --out that does not exist yet starts afresh, with a warning).",
    )


@dataclass
class PlannedStage:
    """A validated stage: where it writes and what it consumes/produces."""

    index: int
    spec: StageSpec
    kind: StageKind
    config: StageConfig
    folder: str
    consumes: str
    produces: str
    gate: float | None = None

    def to_dict(self) -> JsonObject:
        """The `--dry-run --json` form."""
        return {
            "stage": self.spec.name,
            "kind": self.spec.kind,
            "folder": self.folder,
            "consumes": self.consumes,
            "produces": self.produces,
            "max_drop": self.gate,
            "options": _options(self.config),
        }


@dataclass
class PipelineResult:
    """Per-stage records, in order, plus gate outcomes."""

    out: str
    stages: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    report: RunReport | None = None  # once written (rank 0)


def _options(config: StageConfig) -> Any:
    """A stage's options as JSON: each config under its stage name, the stage's own keys
    under `_extra` (when it has some)."""
    return _jsonable({**config.configs, **({"_extra": config.extra} if config.extra else {})})


def _jsonable(obj: Any) -> Any:
    """Dataclasses (also inside dicts/lists) as plain JSON values; anything else as its str."""
    as_json = json.dumps(
        obj, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)
    )
    return json.loads(as_json)


def data_config(recipe: Recipe) -> DataConfig:
    try:
        return DataConfig(**recipe.data)
    except TypeError as e:
        raise RecipeError(f"{recipe.source}: data: {e}") from e


def plan(recipe: Recipe) -> list[PlannedStage]:
    """Validate every stage's options and the order (what each consumes and produces)."""
    data_config(recipe)
    check_code(recipe)
    current = "source"  # the recipe's model (an artifact, or a zoo/factory model with weights)
    untrained = recipe.weights is None and not is_artifact(recipe.model)
    out: list[PlannedStage] = []
    for i, spec in enumerate(recipe.stages):
        where = f"{recipe.source}:{spec.line or '?'}"
        kind = STAGES.get(spec.kind)
        if kind is None:
            raise RecipeError(
                f"{where}: unknown stage {spec.kind!r}; known: " + ", ".join(sorted(STAGES))
            )
        options = dict(spec.options)
        own_gate = kind.name in ("quantize", "deploy")  # max_drop is their own option
        gate = options.get("max_drop") if own_gate else options.pop("max_drop", None)
        if gate is not None and (isinstance(gate, bool) or not isinstance(gate, (int, float))):
            raise RecipeError(f"{where}: max_drop must be a number of points, got {gate!r}")
        config = kind.validate(options, where)
        if current not in kind.consumes:
            raise RecipeError(
                f"{where}: stage {spec.name!r} ({spec.kind}) needs a "
                f"{' or '.join(sorted(kind.consumes))} model, but the stage before it produces "
                f"{'the recipe model' if current == 'source' else 'an ' + current + ' model'}"
                + ("; put a train stage first (or give `weights:`)" if current == "source" else "")
            )
        if current == "source" and untrained and kind.needs_trained:
            raise RecipeError(
                f"{where}: stage {spec.name!r} ({spec.kind}) needs a trained model, but "
                f"{recipe.model!r} has no weights yet; put a train stage first (or give "
                "`weights:`)"
            )
        folder, gate = f"{i + 1:02d}-{spec.name}", None if gate is None else float(gate)
        out.append(PlannedStage(i, spec, kind, config, folder, current, kind.produces, gate))
        current = kind.produces if kind.produces != "report" else current
    return out


def check_code(recipe: Recipe) -> None:
    """A recipe is a file: Python code its `model:` names (a factory, or one stored in an
    artifact) runs only with consent (`trust_code`). Refused here, before any work."""
    if is_factory_ref(recipe.model):
        path = recipe.model.rpartition(":")[0]
        source = read_source(path)
        check_consent(recipe.where("model"), path, sha256_bytes(source), None, recipe.trust_code)
    elif is_artifact(recipe.model):
        card = read_card(recipe.model)
        if card.kind == "pytorch":
            model_code(recipe.model, card, trust_code=recipe.trust_code)


def input_hash(stage: PlannedStage, input_ref: str, data: DataConfig, extra: dict[str, Any]) -> str:
    """What a stage's result depends on; a change means the stage must run again."""
    content = read_card(input_ref).content_hash if is_artifact(input_ref) else input_ref
    payload = {
        "kind": stage.spec.kind,
        "options": _options(stage.config),
        "input": content,
        "data": _jsonable(data),
        **extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def completed_record(folder: Path, digest: str) -> JsonObject | None:
    """The record of a finished stage whose inputs are unchanged (else None), for --resume."""
    record = _read_record(folder)
    if record is None or record.get("input_hash") != digest:
        return None
    if is_artifact(folder):
        read_card(folder)  # raises if files are missing or truncated
    if record.get("artifact"):
        # The next stage loads what this stage made: its folder, never a path read from the
        # record (a file that could point anywhere, at code nobody consented to).
        record["artifact"] = str(folder)
    return record


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _warn_older_records(out: Path, stages: list[PlannedStage]) -> None:
    """One warning naming the finished stages that re-run because an older compress recorded
    them (their input hash is computed differently now), instead of re-running them silently."""
    records = {st.spec.name: _read_record(out / st.folder) for st in stages}
    older = [
        name for name, r in records.items() if r is not None and r.get("format", 1) < RECORD_FORMAT
    ]
    if older:
        log.warning(
            "--resume: %s re-run%s: recorded by an older compress (run record format < %d), "
            "whose input hashes are computed differently",
            ", ".join(older),
            "s" if len(older) == 1 else "",
            RECORD_FORMAT,
        )


def run_pipeline(
    recipe: Recipe,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    hooks: Any = None,
) -> PipelineResult:
    """Run every stage in order; see the module docstring for resume and gates."""
    with stage_output(out, overwrite, check=False, collective=False):
        stages = plan(recipe)
        out = Path(out)
        _join_group(recipe)
        _on_main_then_wait(lambda: _check_out(out, resume, overwrite))
        if resume:
            _on_main_then_wait(lambda: _warn_older_records(out, stages))
        out.mkdir(parents=True, exist_ok=True)
        ctx = StageContext(recipe=recipe, data=data_config(recipe), out=out, hooks=hooks)
        result = PipelineResult(out=str(out))
        t0 = time.perf_counter()
        for st in stages:
            if progress:
                progress(st.spec.name, st.index, len(stages))
            record = _run_stage(st, ctx, resume, overwrite)
            result.stages.append(record)
            if record.get("artifact") and st.produces != "report":
                ctx.current = record["artifact"]
                ctx.artifacts.append(record)
            if st.gate is not None and st.produces != "report" and ctx.artifacts:
                _gate(f"stage {st.spec.name}", st.gate, ctx, record, result)
        result.seconds = time.perf_counter() - t0
        if recipe.max_drop is not None and ctx.artifacts:
            _gate("whole run", recipe.max_drop, ctx, ctx.artifacts[-1], result)
    return result


def _run_stage(
    st: PlannedStage, ctx: StageContext, resume: bool, overwrite: bool
) -> dict[str, Any]:
    folder = ctx.out / st.folder
    digest = input_hash(st, ctx.current, ctx.data, st.kind.hash_extra(st.config, ctx))
    if resume and (done := completed_record(folder, digest)) is not None:
        log.info("stage %s: complete and inputs unchanged; skipped", st.spec.name)
        return {**done, "resumed": True}
    t = time.perf_counter()
    outcome: StageOutcome = st.kind.run(ctx, st.config, folder, overwrite or resume)
    record = {
        "format": RECORD_FORMAT,
        "stage": st.spec.name,
        "kind": st.spec.kind,
        "folder": st.folder,
        "input": ctx.current,
        "input_hash": digest,
        "seconds": time.perf_counter() - t,
        **outcome.record(),
    }
    text = json.dumps(record, indent=2, default=str) + "\n"
    _on_main_then_wait(lambda: write_text(folder / RECORD, text))
    return record


def _join_group(recipe: Recipe) -> None:
    """Under torchrun, join the process group up front (on the device the first training
    stage asks for), so rank 0 can check the output folder before anyone trains."""
    from compress.distributed import group as ddp
    from compress.training.precision import resolve_device

    if not ddp.launched():
        return
    devices = [s.options["device"] for s in recipe.stages if "device" in s.options]
    ddp.setup(resolve_device(str(devices[0]) if devices else "auto"))


def _on_main_then_wait(fn: Callable[[], object]) -> None:
    """`fn` on rank 0 (every rank sees its error), then all ranks continue together."""
    from compress.distributed.collectives import barrier, on_main

    on_main(fn)
    barrier()


def _gate(
    what: str, limit: float, ctx: StageContext, record: dict[str, Any], result: PipelineResult
) -> None:
    """A quality gate: validation top-1 points lost vs the baseline, at most `limit`."""
    base, now = ctx.artifacts[0].get("val_top1"), record.get("val_top1")
    drop = None if base is None or now is None else 100.0 * (base - now)
    passed = drop is None or drop <= limit + 1e-9
    gate = {
        "gate": what,
        "max_drop": limit,
        "drop": drop,
        "passed": passed,
        "measured_on": "validation top-1 vs the baseline (first trained model)",
    }
    result.gates.append(gate)
    if not passed:
        raise QualityGateError(
            f"{what}: validation top-1 dropped {drop:.2f} points (> max_drop {limit}); "
            f"artifacts kept in {ctx.out}",
            artifact=str(record.get("artifact")),
        )


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """A run writes into an empty (or --overwrite) folder; `resume` continues an existing one,
    and, like `compress train --resume` without a checkpoint, starts a missing one afresh."""
    if resume and out.exists():
        return
    if resume:
        log.warning("--resume: %s does not exist yet; starting the run from its first stage", out)
    check_out_dir(out, overwrite)
