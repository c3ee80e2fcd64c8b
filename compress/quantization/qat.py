"""Quantization-aware training that exports to an onnxruntime QDQ graph.

A trained model gets fake-quantization (`compress.quantization.fake_quant`), is calibrated,
fine-tuned and frozen; the export's QuantizeLinear of each weight is folded into int8 (biases
int32), so the file is ~4x smaller and onnxruntime computes what the fake-quant model computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.models.errors import UsageError
from compress.models.zoo.registry import spec_of
from compress.quantization.fake_quant import calibrate, freeze, prepare_qat, quantizers


@dataclass
class QATConfig:
    """Fine-tuning settings: few epochs at a small learning rate, from a trained model."""

    epochs: int = 2
    lr: float = 1e-4
    amp: str = "off"
    momentum: float = 0.01  # EMA of activation ranges while training
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise UsageError(f"--epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be > 0, got {self.lr}")
        if not 0 < self.momentum <= 1:
            raise UsageError("momentum must be in (0, 1]")


@dataclass
class QATResult:
    """The exported QDQ model and how well it matches its PyTorch fake-quant twin."""

    path: str
    fit: dict[str, Any]
    quantizers: int
    fake_quant_val_top1: float
    onnx_val_top1: float
    top1_agreement: float
    max_abs_logit_diff: float
    folded: dict[str, int]


def export_qdq(model: nn.Module, out: str | Path, opset: int = 17) -> dict[str, int]:
    """Export a frozen fake-quant model to ONNX QDQ with int8 weights; dynamic batch."""
    import tempfile
    import warnings

    from compress.quantization import graph as qgraph
    from compress.quantization.fold import fold_weights

    x = torch.zeros(1, *spec_of(model).input_shape)
    with tempfile.TemporaryDirectory(prefix="compress-qat-") as tmp:
        raw = Path(tmp) / "fake_quant.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        folded = fold_weights(raw, out)
    qgraph.compact(out)
    qgraph.check_quantized(out)
    return folded


def qat_finetune(
    model: nn.Module,
    data: Any,
    cfg: QATConfig,
    calib: np.ndarray,
    out: str | Path,
    *,
    hooks: Any = None,
    eval_samples: int | None = None,
) -> QATResult:
    """Fake-quant fine-tuning of a copy of `model` on `data.train` (a DataBundle), exported to
    `out` (QDQ); `calib` initializes the activation ranges. The ONNX model is checked against
    the fake-quant PyTorch model (the same up to int8 kernel rounding)."""
    from compress.quantization import ortrun
    from compress.training.evaluate import evaluate, torch_predictor
    from compress.training.fit import TrainConfig, fit

    qm = prepare_qat(model, cfg.momentum)
    calibrate(qm, calib)
    train_cfg = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, amp=cfg.amp, seed=cfg.seed)
    result = fit(qm, data, train_cfg, hooks=hooks)
    freeze(qm)
    folded = export_qdq(qm, out)
    n = spec_of(qm).num_classes
    fq_top1 = evaluate(torch_predictor(qm), data.loader("val"), n, limit=eval_samples).top1
    onnx_top1 = ortrun.top1(out, data.loader("val"), n, limit=eval_samples)
    probe = torch.from_numpy(calib[:256])
    with torch.no_grad():
        ref = qm(probe).numpy()
    got = ortrun.run(ortrun.session(out), probe.numpy())
    return QATResult(
        path=str(out),
        fit=result.to_dict(),
        quantizers=len(quantizers(qm)),
        fake_quant_val_top1=fq_top1,
        onnx_val_top1=onnx_top1,
        top1_agreement=float(np.mean(ref.argmax(1) == got.argmax(1))),
        max_abs_logit_diff=float(np.max(np.abs(ref - got))),
        folded=folded,
    )
