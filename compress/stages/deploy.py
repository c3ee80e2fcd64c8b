"""`compress deploy`: run an artifact every way this machine can, keep the fastest that is accurate.

Every runtime x precision x thread count (PyTorch artifacts also exported to ONNX) is measured
on the validation split, gated (`max_drop` points vs the card's top-1, else fp32 here), timed in
interleaved rounds; the fastest is written with `deploy.json`, what `compress predict` runs.
No candidate within the gate: nothing is written, QualityGateError (exit 5) carries the table.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.export.bench.cases import BenchModel, Skipped, check_names, plan_cases
from compress.export.environment import capture_environment
from compress.export.runtimes.input_size import onnx_spec_at_size
from compress.export.runtimes.precision import PRECISIONS
from compress.export.runtimes.runner import RUNTIMES, TORCH_RUNTIMES
from compress.models.artifacts.artifact import ONNX, Card, is_artifact, now, read_card, save_model
from compress.models.artifacts.resolve import onnx_input
from compress.models.data.datasets import DataConfig, load_data
from compress.models.errors import QualityGateError, UnsupportedError, UsageError
from compress.models.jsontypes import JsonObject
from compress.models.options import check_options, option
from compress.stages import deploy_gate as gate
from compress.stages.common import (
    Model,
    ModelRef,
    card_for,
    data_config_for,
    load_source_at,
    model_ref,
)
from compress.stages.deploy_gate import Speedup, Trial, candidate_rows, format_table
from compress.stages.frame import StageFrame, stage_output

log = logging.getLogger(__name__)

SCHEMA = "compress-deploy/1"
MANIFEST = "deploy.json"
DEFAULT_MAX_DROP = 1.0  # points of validation top-1, as `compress quantize`'s accuracy budget
SOURCE_KEYS = ("kind", "precision", "content_hash")  # deploy.json's source: the card's
SPEC_KEYS = ("input_size", "in_channels", "num_classes", "mean", "std")  # ... and preprocessing


@dataclass
class DeployConfig:
    """What to try and how hard to measure it."""

    runtimes: tuple[str, ...] | None = option(
        None,
        "Only these runtimes (repeatable): torch, torch-cuda, torch-compile, "
        "ort-cpu, ort-cuda, ort-trt, openvino, openvino-gpu, openvino-npu. "
        "Default: every one; those this machine can't run are listed as skipped, "
        "with the reason.",
        flag=("--runtime", "-r"),
        cli="repeat",
    )  # None: every runtime compress.export.runtimes.runner knows
    precisions: tuple[str, ...] = option(
        PRECISIONS,
        "Comma-separated precisions to try: fp32, bf16, fp16, int8 (an int8 or "
        "fp16 artifact runs only as itself).",
        flag="--precision",
        cli="csv",
    )
    threads: tuple[int, ...] | None = option(
        None, "Comma-separated thread counts (default: 1 and all physical cores).", cli="csv-int"
    )
    batch_sizes: tuple[int, ...] = option(
        (1,), "Comma-separated batch sizes; the first decides the fastest.", cli="csv-int"
    )
    max_drop: float = option(
        DEFAULT_MAX_DROP, "Accuracy gate: points of validation top-1 a candidate may lose.", min=0
    )
    seconds: float = option(
        1.0, "Timing budget per candidate and batch size (all rounds).", above=0
    )
    rounds: int = option(3, "Candidates take turns in this many slices.", min=1)
    warmup: int = option(2, "Untimed runs before each candidate.", cli=False, min=0)
    eval_samples: int | None = option(None, "Cap on validation images per candidate.", min=1)
    baseline: str | None = option(
        None,
        "The dense parent artifact: measured the same way, and the chosen "
        "candidate's speed-up is given vs its fastest case and vs its onnxruntime"
        " fp32 case.",
    )
    exclude: tuple[str, ...] = option(
        (), "A runtime not to try (repeatable), e.g. torch-compile.", cli="repeat"
    )  # names this build lacks are ignored
    input_size: int | None = option(
        None,
        "Deploy at N x N input (a zoo name is built at N): a PyTorch artifact is "
        "re-targeted when resolution-independent (a too-small N or a fixed-size "
        "Linear after flatten is refused naming the layer); an ONNX artifact only"
        " at the size it was exported at (or any, if its H/W are dynamic). "
        "Candidates and --baseline are timed at N, and predict resizes images to "
        "N. At a size other than the one the weights were trained at, the "
        "accuracy gate runs on validation images resized to N against fp32 at N "
        "(a check of runtimes and precisions, not of the model's accuracy, which "
        "resizing changes); --eval-samples bounds its cost.",
        min=1,
    )

    def __post_init__(self) -> None:
        self.batch_sizes = tuple(dict.fromkeys(self.batch_sizes))
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"--batch-sizes must be >= 1, got {list(self.batch_sizes)}")
        if not self.precisions:
            raise UsageError("give at least one --precision")
        check_options(self, flags=True)


@dataclass
class DeployResult:
    """Where the model went, what was chosen and why (every candidate's figures)."""

    out: str
    chosen: Trial
    candidates: list[Trial]  # every candidate tried (the skipped ones are in `skipped`)
    skipped: list[Skipped]
    reference_top1: float | None
    reference: str
    speedup: Speedup | None = None  # p50 of the choice; vs the baseline's when given
    manifest: dict[str, Any] = field(default_factory=dict)  # deploy.json, as written

    def to_dict(self) -> JsonObject:
        """The JSON of `compress deploy --json`."""
        return {
            "out": self.out,
            "chosen": self.chosen.to_dict(),
            "candidates": candidate_rows(self.skipped, self.candidates),
            "reference_top1": self.reference_top1,
            "reference": self.reference,
            "speedup": asdict(self.speedup) if self.speedup else None,
            "manifest": self.manifest,
        }


@dataclass
class _Source:
    """The artifact in its forms (a bench model: PyTorch module and/or ONNX file), its folders;
    then its candidates, measured on the validation split and gated."""

    card: Card
    model: BenchModel
    torch_dir: Path | None = None  # a PyTorch artifact directory to copy
    onnx_dir: Path | None = None  # an ONNX artifact directory to copy
    trials: list[Trial] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    reference: float | None = None
    where: str = ""

    @property
    def passed(self) -> list[Trial]:
        return [t for t in self.trials if t.status == "ok"]


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
    accuracy gate, and write the fastest to `out` (model files + deploy.json; `compress.deploy`,
    `compress deploy`)."""
    cfg, ref = config or DeployConfig(), model_ref(model)
    with (
        stage_output(out, overwrite, collective=False) as frame,
        tempfile.TemporaryDirectory(prefix="compress-deploy-") as tmp,
    ):
        m = _measure(ref, data, Path(tmp) / "model", cfg, progress)
        if not m.passed:
            raise QualityGateError(
                f"no candidate passed the accuracy gate (max_drop {cfg.max_drop:g} pt vs "
                f"{gate.pct(m.reference)} {m.where}); nothing was deployed\n"
                + format_table(m.trials, m.skipped),
                hint="raise --max-drop, or deploy a more accurate artifact",
            )
        base = None
        if cfg.baseline:
            base = _measure(ModelRef(cfg.baseline), data, Path(tmp) / "baseline", cfg, progress)
        gate.time_trials(
            m.passed + (base.passed if base else []),
            cfg.batch_sizes,
            seconds=cfg.seconds,
            rounds=cfg.rounds,
            warmup=cfg.warmup,
            progress=progress,
        )
        best = _fastest(m.trials, cfg.batch_sizes[0])
        best.status = "chosen"
        # p50 of the choice; speed-ups only against a measured baseline (else None)
        speedup = gate.speedups(best, base.trials if base else [], cfg.batch_sizes[0])
        manifest = _manifest(m, best, cfg, ref, base, speedup)
        _write(frame, m, best, manifest)
    return DeployResult(
        str(out), best, m.trials, m.skipped, m.reference, m.where, speedup, manifest
    )


def _runtimes(cfg: DeployConfig) -> tuple[str, ...]:
    """The runtimes to try: the asked ones (default: all) less the excluded ones."""
    return tuple(r for r in (cfg.runtimes or RUNTIMES) if r not in cfg.exclude)


def _measure(
    ref: ModelRef,
    data: DataConfig | None,
    tmp: Path,
    cfg: DeployConfig,
    progress: Callable[[str], None] | None,
) -> _Source:
    """Load `ref`, open its candidates, measure their validation top-1 and apply the gate."""
    check_names(_runtimes(cfg), cfg.precisions)
    src = _load(ref, data, tmp, cfg)
    threads = gate.thread_counts(cfg.threads)
    plan = plan_cases([src.model], _runtimes(cfg), lambda _: cfg.precisions, threads)
    if not plan.cases:
        raise UsageError(
            f"no runtime x precision can run {ref.model} here: "
            + "; ".join(f"{s.runtime}/{s.precision}: {s.reason}" for s in plan.skipped)
        )
    src.trials, src.skipped = gate.open_trials(plan.cases), plan.skipped
    spec = src.card.model_spec
    bundle = load_data(data_config_for(data, src.card), spec)
    if progress:
        progress(f"{ref.model}: accuracy on the validation split")
    gate.measure_accuracy(src.trials, bundle.loader("val"), spec.num_classes, cfg.eval_samples)
    src.reference, src.where = gate.reference_of(src.card, src.trials)
    gate.apply_gate(src.trials, src.reference, cfg.max_drop)
    return src


def _load(ref: ModelRef, data: DataConfig | None, tmp: Path, cfg: DeployConfig) -> _Source:
    """The model in every form a wanted runtime reads (PyTorch ones exported to ONNX)."""
    path = Path(ref.model)
    onnx = onnx_input(path)
    if onnx is not None and onnx.card is None:
        raise UsageError(
            f"{path}: deploy takes an artifact directory (its card holds the preprocessing)",
            hint="wrap it with `compress export`, or pass the artifact it came from",
        )
    if onnx is not None and onnx.card is not None:
        card = onnx.card
        if cfg.input_size is not None:
            spec = onnx_spec_at_size(onnx.file, card.model_spec, cfg.input_size)
            card.spec = spec.to_dict()
        model = BenchModel(path.name, card.model_spec, onnx_path=str(onnx.file), card=card)
        return _Source(card, model, onnx_dir=path)
    model_src = load_source_at(ref, data, cfg.input_size)
    module = model_src.model.eval()
    if model_src.card is not None and is_artifact(path):
        card, torch_dir = model_src.card, path
        if read_card(path).spec != card.spec:  # re-targeted: a copy carries the new spec
            torch_dir = tmp / "pytorch"
            save_model(module, torch_dir, card)
    else:
        card, torch_dir = card_for(model_src, None), tmp / "pytorch"
        save_model(module, torch_dir, card)
    model = BenchModel(path.name, card.model_spec, torch_model=module, card=card)
    src = _Source(card, model, torch_dir=torch_dir)
    if not all(r in TORCH_RUNTIMES for r in _runtimes(cfg)):
        _export(src, data, tmp / "onnx", cfg.input_size)
    return src


def _export(src: _Source, data: DataConfig | None, out: Path, size: int | None) -> None:
    """Export for the ONNX runtimes; a failed export leaves them out, with the reason."""
    from compress.export.onnx.convert import ExportConfig
    from compress.models.errors import CompressError
    from compress.stages.export import run_export

    try:
        run_export(str(src.torch_dir), out, ExportConfig(input_size=size), data)
    except CompressError as e:
        src.model.onnx_error = str(e.args[0]).splitlines()[0]
        log.warning("deploy: ONNX export failed, ONNX runtimes are skipped: %s", e)
        return
    src.onnx_dir, src.model.onnx_path = out, str(out / ONNX)


def _fastest(trials: list[Trial], bs: int) -> Trial:
    timed = [t for t in trials if t.status == "ok" and bs in t.timed]
    if not timed:
        raise UnsupportedError(
            "every candidate within the accuracy gate failed while being timed; nothing was "
            "deployed\n" + format_table(trials)
        )
    return min(timed, key=lambda t: t.p50(bs))


def _manifest(
    m: _Source,
    best: Trial,
    cfg: DeployConfig,
    ref: ModelRef,
    base: _Source | None,
    speedup: Speedup,
) -> dict[str, Any]:
    """deploy.json: the choice, how to run and preprocess it, every candidate's figures."""
    card, spec, case = m.card, m.card.model_spec, best.case
    doc = {
        "schema": SCHEMA,
        "created": now(),
        "source": {"model": ref.model} | {k: getattr(card, k) for k in SOURCE_KEYS},
        "runtime": case.runtime,
        "device": gate.device_of(case.runtime),
        "precision": case.precision,
        "effective_precision": best.effective_precision,
        "model_precision": card.precision,
        "threads": case.threads,
        "options": {
            "providers": best.providers,
            "form": "pytorch" if case.runtime in TORCH_RUNTIMES else "onnx",
        },
        "chosen": best.to_dict(),
        "spec": {k: v for k, v in spec.to_dict().items() if k in SPEC_KEYS},
        "class_names": list(card.class_names),
        "gate": {"max_drop": cfg.max_drop, "reference_top1": m.reference, "reference": m.where},
        "selected_by": f"lowest p50 latency at batch {cfg.batch_sizes[0]} within the gate",
        "candidates": candidate_rows(m.skipped, m.trials),
        "config": asdict(cfg),
        "environment": capture_environment(case.threads),
    }
    if base is not None:
        rows = candidate_rows(base.skipped, base.trials)
        doc["baseline"] = {
            "model": cfg.baseline,
            "reference_top1": base.reference,
            "candidates": rows,
        }
    doc["speedup"] = asdict(speedup)
    return doc


def _write(frame: StageFrame, src: _Source, best: Trial, manifest: dict[str, Any]) -> None:
    """The chosen form's artifact files plus deploy.json, in one atomic rename."""
    folder = src.torch_dir if manifest["options"]["form"] == "pytorch" else src.onnx_dir
    assert folder is not None
    with frame.directory() as tmp:
        for f in sorted(folder.iterdir()):
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        manifest["files"] = sorted(p.name for p in tmp.iterdir())
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    log.info("deployed %s on %s to %s", manifest["source"]["model"], best.case.label, frame.out)
