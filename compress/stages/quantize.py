"""`compress quantize`: a model -> an int8 (or fp16) ONNX artifact, accuracy-gated and measured.

A PyTorch model is first exported (parity-gated) by the export stage; an ONNX artifact is used
as is. The card records what was chosen and why, fp32 vs quantized size / accuracy / latency,
the nodes kept in float and plain notes. A missed accuracy budget keeps the artifact, marks its
card (gates.accuracy) and raises QualityGateError (exit code 5).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from compress.distributed import collectives
from compress.distributed import group as ddp
from compress.export.onnx.file import read_metadata, set_metadata
from compress.models.artifacts.artifact import ONNX, Card, read_card, write_card
from compress.models.artifacts.resolve import onnx_input
from compress.models.data.datasets import DataBundle, DataConfig, load_data
from compress.models.errors import QualityGateError, UsageError
from compress.models.notes import Note, texts
from compress.models.zoo.registry import spec_of
from compress.quantization import ortrun
from compress.quantization.calibration import calibration_inputs
from compress.quantization.int4_trained import untrained_hint, with_trained_int4
from compress.quantization.quantize import QuantizeConfig, QuantizeResult, measure_pair, quantize
from compress.stages.common import Model, ModelRef, data_config_for, load_source, model_ref
from compress.stages.frame import StageFrame, stage_output
from compress.stages.results import QuantizeSummary
from compress.training.config import Hooks
from compress.training.evaluate import evaluate
from compress.training.precision import resolve_device

log = logging.getLogger(__name__)


def run_quantize(
    model: Model,
    out: str | Path,
    config: QuantizeConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
    hooks: Hooks | None = None,
) -> QuantizeSummary:
    """Quantize `model` (PyTorch or ONNX artifact) into the ONNX artifact `out`; returns the
    summary stored in its card (`compress.quantize`, `compress quantize`; `hooks` follow QAT).
    Under torchrun QAT fine-tunes on every rank (DDP); otherwise rank 0 alone quantizes."""
    cfg, ref = config or QuantizeConfig(), model_ref(model)
    with stage_output(out, overwrite) as frame:
        dist, _ = frame.join(resolve_device("auto") if cfg.method == "qat" else "cpu")
        if dist.active and cfg.method != "qat":
            summary, failed = collectives.on_main(lambda: _quantize(ref, cfg, data, frame, hooks))
        else:
            summary, failed = _quantize(ref, cfg, data, frame, hooks)
    if failed is not None:
        raise failed
    return summary


def _quantize(
    ref: ModelRef,
    cfg: QuantizeConfig,
    data: DataConfig | None,
    frame: StageFrame,
    hooks: Any,
) -> tuple[QuantizeSummary, QualityGateError | None]:
    """The work of run_quantize; a missed accuracy gate is returned, to be raised by the caller."""
    out = frame.out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.fp32-", dir=out.parent) as tmp:
        fp32, card = _float_onnx(ref, cfg, data, Path(tmp))
        cfg, int4_notes = with_trained_int4(cfg, fp32, card.history)
        spec = card.model_spec
        bundle = load_data(data_config_for(data, card), spec)
        if not card.trained:
            log.warning("the model is untrained: accuracy numbers are meaningless, gate skipped")
        calib = calibration_inputs(bundle.val, cfg.samples, cfg.seed)
        gated = cfg if card.trained else replace(cfg, max_drop=None)
        with frame.directory() as adir:
            path = adir / ONNX
            if cfg.method == "qat":
                result = _qat(ref, gated, data, bundle, calib, fp32, path, hooks)
            else:
                val = bundle.loader("val") if card.trained else None
                result = quantize(fp32, gated, calib, path, val=val, num_classes=spec.num_classes)
            hint = untrained_hint(result.settings.get("layer_bits") or {}, card.history)
            result.notes.extend(Note(n) for n in [*int4_notes, *hint])
            _copy_metadata(fp32, path, result.precision)
            test = _test_metrics(fp32, path, bundle, cfg) if card.trained else None
            new = _card(card, ref, cfg, result, test)
            if cfg.method == "qat" and ddp.info().active:  # trained under torchrun
                new.distributed = ddp.info().record()
            write_card(adir, new)
    summary = QuantizeSummary(str(out), card.trained, result, test)
    if not result.budget_met:
        return summary, QualityGateError(
            f"{result.precision} accuracy gate failed: validation top-1 dropped "
            f"{result.drop_pts:.2f} pt (budget {cfg.max_drop} pt) with "
            f"{len(result.fallback_nodes)} node(s) kept in float",
            hint=f"the artifact was kept at {out} and marked in card.json (gates.accuracy); "
            + (
                "try --bits auto (per-layer widths by measured drop) or --layer-bits NODE=8"
                if result.layers
                else "raise --max-fallback or --max-drop, try --calibration entropy or --method qat"
            ),
            artifact=str(out),
        )
    return summary, None


def _float_onnx(
    ref: ModelRef, cfg: QuantizeConfig, data: DataConfig | None, tmp: Path
) -> tuple[Path, Card]:
    """The fp32 ONNX file to start from and its card: the input as is, or a fresh export."""
    onnx = onnx_input(ref.model)
    if onnx is not None and onnx.card is not None:
        card = onnx.card
        if cfg.method == "qat":
            raise UsageError(
                "--method qat fine-tunes in PyTorch; pass the PyTorch artifact, not an ONNX one"
            )
        if card.precision != "fp32":
            raise UsageError(
                f"{ref.model} is already {card.precision}; quantize its fp32 parent instead"
            )
        return onnx.file, card
    if onnx is not None:  # a bare .onnx file
        from compress.export.runtimes.runner import card_from_onnx

        if cfg.method == "qat":
            raise UsageError("--method qat needs a PyTorch model, not an .onnx file")
        return onnx.file, card_from_onnx(onnx.file)
    from compress.stages.export import run_export

    run_export(ref, tmp / "fp32", data=data)  # parity-gated: raises if it fails
    return tmp / "fp32" / ONNX, read_card(tmp / "fp32")


def _qat(
    ref: ModelRef,
    cfg: QuantizeConfig,
    data: DataConfig | None,
    bundle: DataBundle,
    calib: Any,
    fp32: Path,
    path: Path,
    hooks: Any,
) -> QuantizeResult:
    """Fake-quant fine-tuning of the PyTorch model, exported to QDQ, compared with fp32."""
    from compress.quantization.isa import detect_isa
    from compress.quantization.qat import QATConfig, qat_finetune

    model = load_source(ref, data).model
    qcfg = QATConfig(epochs=cfg.epochs, lr=cfg.lr, amp=cfg.amp, seed=cfg.seed)
    r = qat_finetune(model, bundle, qcfg, calib, path, hooks=hooks, eval_samples=cfg.eval_samples)
    n = spec_of(model).num_classes
    fp32_top1 = ortrun.top1(fp32, bundle.loader("val"), n, cfg.eval_samples)
    drop = round((fp32_top1 - r.onnx_val_top1) * 100, 3)
    result = QuantizeResult(
        path=str(path),
        method="qat",
        precision="int8",
        settings={
            "format": "qdq",
            "activation_type": "uint8",
            "weight_type": "int8",
            "per_channel": True,
            "reduce_range": False,
            "calibration": "minmax, then EMA during training",
            "samples": len(calib),
            "epochs": cfg.epochs,
            "lr": cfg.lr,
        },
        reason="QAT: int8 per-channel weights and uint8 per-tensor activations learned with "
        "fake quantization, exported to QDQ (onnxruntime fuses it into QLinearConv/QGemm)",
        isa=detect_isa().to_dict(),
        fp32={"val_top1": fp32_top1},
        quantized={
            "val_top1": r.onnx_val_top1,
            "fake_quant_val_top1": r.fake_quant_val_top1,
            "onnx_vs_fake_quant_top1_agreement": r.top1_agreement,
            "onnx_vs_fake_quant_max_abs": r.max_abs_logit_diff,
        },
        drop_pts=drop,
        budget_met=cfg.max_drop is None or drop <= cfg.max_drop,
        fallback_attempts=[{"fit": r.fit}],
    )
    measure_pair(fp32, result, calib[:64], (1, 32) if cfg.latency else ())
    return result


def _copy_metadata(src: Path, dst: Path, precision: str) -> None:
    """Keep the compress.* metadata (spec, classes) so the bare .onnx stays self-describing."""
    import onnx

    if meta := read_metadata(src):
        model = onnx.load(str(dst))
        del model.metadata_props[:]
        set_metadata(model, {**meta, "compress.precision": precision})
        onnx.save(model, str(dst))


def _test_metrics(fp32: Path, q: Path, bundle: DataBundle, cfg: QuantizeConfig) -> dict[str, Any]:
    """Test-split metrics of both models (reporting only; decisions used the val split)."""
    n, test = len(bundle.class_names) or 10, bundle.loader("test")
    out: dict[str, Any] = {}
    for name, path in (("fp32", fp32), ("quantized", q)):
        r = evaluate(ortrun.predictor(ortrun.session(path)), test, n, cfg.eval_samples)
        out[name] = r.to_dict(full=False)
    out["drop_pts"] = round((out["fp32"]["top1"] - out["quantized"]["top1"]) * 100, 3)
    return out


def _card(
    card: Card, ref: ModelRef, cfg: QuantizeConfig, r: QuantizeResult, test: dict[str, Any] | None
) -> Card:
    new = card.model_copy(deep=True)
    new.kind, new.precision = "onnx", r.precision
    new.metrics = {"val": {"top1": r.quantized.get("val_top1")}}
    if test is not None:
        new.metrics["test"] = test["quantized"]
    if "parity" in new.gates:  # the fp32 parent's export gate: say whose it is
        new.gates["export_parity"] = new.gates.pop("parity")
    new.gates["accuracy"] = {
        "passed": r.budget_met,
        "split": "val",
        "max_drop_pts": cfg.max_drop if card.trained else None,
        "drop_pts": r.drop_pts,
        "note": None if card.trained else "untrained model: accuracy gate skipped",
    }
    if "parity" in r.quantized:
        new.gates["fp16_parity"] = r.quantized["parity"]
    new.quantization = {
        "method": r.method,
        "precision": r.precision,
        "settings": r.settings,
        "why": r.reason,
        "isa": r.isa["name"],
        "fallback_nodes": r.fallback_nodes,
        "size_ratio": round(r.size_ratio, 4),
        "notes": texts(r.notes),
    }
    if r.layers:  # per layer: weight bits and what onnxruntime computes it in
        new.quantization["layers"] = r.layers
    new.add_history(
        "quantize",
        source=ref.model,
        source_content_hash=card.content_hash or None,
        config=asdict(cfg),
        result={k: v for k, v in r.to_dict().items() if k != "path"},
        test=test,
    )
    return new
