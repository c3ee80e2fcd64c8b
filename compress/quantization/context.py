"""The quantization run's config, result and shared context: below `quantize` and the int8,
fp16 and mixed back ends it dispatches to, so none of those imports another."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.models.errors import UsageError
from compress.models.jsontypes import JsonObject
from compress.models.notes import Note, texts
from compress.models.options import check_options, option
from compress.quantization import graph as qgraph
from compress.quantization import ortrun
from compress.quantization.isa import detect_isa
from compress.training.precision import AMP_MODES

PROBE = 64  # inputs used to rank node sensitivity and compare logits
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class QuantizeConfig:
    """How to quantize. `auto` fields follow the CPU's instruction set (see compress.quantization.isa)."""

    method: str = option(
        "ptq-static",
        "ptq-static (default), ptq-dynamic (Linear only), qat or fp16.",
        choices=("ptq-static", "ptq-dynamic", "qat", "fp16"),
    )
    samples: int = option(300, "Calibration images (seeded subset of the validation split).", min=1)
    calibration: str = option(  # onnxruntime's CalibrationMethod names
        "minmax", "minmax, entropy or percentile.", choices=("minmax", "entropy", "percentile")
    )
    per_channel: bool = option(
        True, "Per-channel weight scales.", flag="--per-channel/--per-tensor"
    )
    format: str = option("qdq", "qdq (default) or qoperator.", choices=("qdq", "qoperator"))
    activation_type: str = option(
        "auto", "auto (from the CPU), uint8 or int8.", choices=("auto", "uint8", "int8")
    )
    weight_type: str = option(
        "auto", "auto (from the CPU), int8 or uint8.", choices=("auto", "uint8", "int8")
    )
    reduce_range: str | bool = option("auto", "auto (from the CPU), on or off (7-bit weights).")
    tune: bool = option(
        False,
        "Try the candidate int8 settings, measure validation accuracy and "
        "latency, keep the fastest within --max-drop.",
    )
    max_drop: float | None = option(
        1.0, "Accuracy budget: points of validation top-1 int8 may lose.", min=0
    )  # None: no accuracy gate
    max_fallback: int = option(
        8, "Most nodes kept in float to meet --max-drop (0: no fallback).", min=0
    )
    keep_float: tuple[str, ...] = option(
        (), "Keep this ONNX node in float (repeatable), e.g. /conv1/Conv.", cli="repeat"
    )
    mixed: bool = option(False, "fp16: keep sensitive nodes fp32 until the parity gate holds.")
    epochs: int = option(2, "QAT fine-tuning epochs.", min=0)
    lr: float = option(1e-4, "QAT peak learning rate.", above=0)
    amp: str = option(
        "off", "QAT training precision (off, bf16, auto).", choices=AMP_MODES
    )  # fake-quant ranges are sensitive to bf16
    eval_samples: int | None = option(
        None, "Cap on validation/test images per accuracy check.", min=1
    )
    latency: bool = option(True, "Measure fp32 vs quantized latency.")
    seed: int = option(0, "Seed of the calibration subset and QAT.", cli=False)
    weight_bits: int | str = option(
        8,
        "8 (int8), 4 (int4 weights: Linear as MatMulNBits, Conv dequantized at "
        "run time) or auto (fp32/int8/int4 per layer by measured sensitivity "
        "under --max-drop).",
        flag=("--weight-bits", "--bits"),
    )
    layer_bits: dict[str, int] = option(
        help="Bit width of one layer, NODE=4|8|32 (repeatable), e.g. /fc1/Gemm=4. "
        "Layers trained on the int4 grid (`compress distill --int4-layers`) "
        "default to 4.",
        factory=dict,
        cli="pairs",
        shape="NODE=BITS (e.g. /fc1/Gemm=4)",
    )
    target_size_kb: float | None = option(
        None, "--bits auto: stop lowering once the file fits (KB).", flag="--target-size"
    )
    int4_opset: int = option(21, "Opset of int4 models (standard INT4 needs >= 21).")
    block_size: int = option(32, "MatMulNBits block size along K.")

    def __post_init__(self) -> None:
        self._check_bits()
        check_options(self, flags=True)
        if isinstance(self.reduce_range, str):
            rr = self.reduce_range.lower()
            if rr not in ("auto", "true", "false", "on", "off"):
                raise UsageError(f"--reduce-range must be auto, on or off, got {rr!r}")
            self.reduce_range = "auto" if rr == "auto" else rr in ("true", "on")
        if self.tune and self.method != "ptq-static":
            raise UsageError("--tune applies to ptq-static (it tries activation/weight settings)")

    def _check_bits(self) -> None:
        wb = str(self.weight_bits).strip().lower()
        if wb not in ("4", "8", "auto"):
            raise UsageError(
                f"--weight-bits must be 4, 8 or auto, got {self.weight_bits!r}",
                hint="onnxruntime runs 4-bit (int4, MatMulNBits) and 8-bit weights; fp32 is "
                "chosen per layer with --bits auto or --layer-bits NODE=32",
            )
        self.weight_bits = wb if wb == "auto" else int(wb)
        if self.lowers_bits and self.method != "ptq-static":
            raise UsageError(f"--weight-bits {wb} applies to ptq-static, not {self.method}")
        if self.target_size_kb is not None and (
            self.weight_bits != "auto" or not self.target_size_kb > 0
        ):
            raise UsageError("--target-size takes a size in KB > 0, with --bits auto")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise UsageError(f"--block-size must be a power of 2 >= 16, got {self.block_size}")

    @property
    def lowers_bits(self) -> bool:
        """int4 or per-layer bit widths (compress.quantization.mixed), not plain int8."""
        return self.weight_bits != 8 or bool(self.layer_bits)


@dataclass
class QuantizeResult:
    """What was done, why, and what it measured (fp32 vs quantized)."""

    path: str
    method: str
    precision: str
    settings: dict[str, Any]
    reason: str
    isa: dict[str, Any]
    fp32: dict[str, Any]
    quantized: dict[str, Any]
    drop_pts: float | None
    budget_met: bool
    fallback_nodes: list[str] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    fallback_attempts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)  # per layer: bits, compute

    @property
    def size_ratio(self) -> float:
        return self.quantized["bytes"] / max(self.fp32["bytes"], 1)

    def to_dict(self) -> JsonObject:
        return {**asdict(self), "notes": texts(self.notes), "size_ratio": round(self.size_ratio, 4)}


@dataclass
class QuantContext:
    """Everything one quantization run shares between its steps."""

    cfg: QuantizeConfig
    source: Path  # the float model as given
    pre: Path  # after quant_pre_process
    work: Path
    info: qgraph.GraphInfo
    calib: np.ndarray | None
    val: list[tuple[torch.Tensor, torch.Tensor]] | None
    num_classes: int
    probe: np.ndarray
    counter: itertools.count = field(default_factory=itertools.count)

    def fresh(self, stem: str) -> Path:
        return self.work / f"{stem}-{next(self.counter)}.onnx"

    def top1(self, path: Path) -> float | None:
        if self.val is None:
            return None
        return ortrun.top1(path, self.val, self.num_classes, self.cfg.eval_samples)

    def result(
        self, path: Path, precision: str, fp32_top1: float | None, top1: float | None, **kw: Any
    ) -> QuantizeResult:
        """A result with both models' top-1, the drop, the budget check and this CPU filled in."""
        drop, max_drop = drop_pts(fp32_top1, top1), self.cfg.max_drop
        return QuantizeResult(
            path=str(path),
            method=self.cfg.method,
            precision=precision,
            isa=detect_isa().to_dict(),
            fp32={"val_top1": fp32_top1},
            quantized={"val_top1": top1},
            drop_pts=drop,
            budget_met=max_drop is None or drop is None or drop <= max_drop,
            **kw,
        )


def drop_pts(fp32: float | None, q: float | None) -> float | None:
    """Top-1 points lost from `fp32` to `q` (fractions in), None when either is unknown."""
    return None if fp32 is None or q is None else round((fp32 - q) * 100, 3)
