"""compress: prune, distill, quantize and export CNNs, and measure what it bought.

One function per verb, each with its config class, e.g. `compress.train("lenet5",
"runs/lenet5", compress.TrainConfig(epochs=12))`. Importing this package is cheap (no torch):
the names below load on first use, through the module `__getattr__`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first attribute access): the verbs
# (lower-case names in __all__) come from compress.api, the config classes from their modules.
_CONFIGS = {
    "DeployConfig": "compress.stages.deploy",
    "TuneConfig": "compress.pipeline.tune",
    "ModelRef": "compress.stages.common",
    "TrainConfig": "compress.training.config",
    "PruneConfig": "compress.pruning.config",
    "DistillConfig": "compress.distillation.distill",
    "QuantizeConfig": "compress.quantization.context",
    "ExportConfig": "compress.export.onnx.convert",
    "BenchConfig": "compress.export.bench.measure",
    "DataConfig": "compress.models.data.splits",
    "FactorizeConfig": "compress.factorization.svd",
    "SensitivityConfig": "compress.pruning.sensitivity",
}
__all__ = [
    "BenchConfig",
    "DataConfig",
    "DeployConfig",
    "DistillConfig",
    "ExportConfig",
    "FactorizeConfig",
    "ModelRef",
    "PruneConfig",
    "QuantizeConfig",
    "SensitivityConfig",
    "TrainConfig",
    "TuneConfig",
    "__version__",
    "bench",
    "deploy",
    "distill",
    "doctor",
    "evaluate",
    "export_onnx",
    "factorize",
    "predict",
    "prune",
    "quantize",
    "run_recipe",
    "sensitivity",
    "train",
    "tune",
]
_LAZY = {name: "compress.api" for name in __all__ if name[0].islower()} | _CONFIGS

if TYPE_CHECKING:
    from compress.api import (
        bench,
        deploy,
        distill,
        doctor,
        evaluate,
        export_onnx,
        factorize,
        predict,
        prune,
        quantize,
        run_recipe,
        sensitivity,
        train,
        tune,
    )
    from compress.distillation.distill import DistillConfig
    from compress.export.bench.measure import BenchConfig
    from compress.export.onnx.convert import ExportConfig
    from compress.factorization.svd import FactorizeConfig
    from compress.models.data.splits import DataConfig
    from compress.pipeline.tune import TuneConfig
    from compress.pruning.config import PruneConfig
    from compress.pruning.sensitivity import SensitivityConfig
    from compress.quantization.context import QuantizeConfig
    from compress.stages.common import ModelRef
    from compress.stages.deploy import DeployConfig
    from compress.training.config import TrainConfig


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'compress' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
