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
# from compress.api (its __all__, less Model and model_ref), the config classes from their modules.
_VERBS = (
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
)
_LAZY = dict.fromkeys(_VERBS, "compress.api") | {
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
    "EvalConfig": "compress.stages.evaluate",
    "PredictConfig": "compress.stages.predict",
    "RunConfig": "compress.pipeline.runner",
    "DoctorConfig": "compress.export.doctor.diagnose",
}
__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from compress.api import *  # noqa: F403
    from compress.distillation.distill import DistillConfig as DistillConfig
    from compress.export.bench.measure import BenchConfig as BenchConfig
    from compress.export.doctor.diagnose import DoctorConfig as DoctorConfig
    from compress.export.onnx.convert import ExportConfig as ExportConfig
    from compress.factorization.svd import FactorizeConfig as FactorizeConfig
    from compress.models.data.splits import DataConfig as DataConfig
    from compress.pipeline.runner import RunConfig as RunConfig
    from compress.pipeline.tune import TuneConfig as TuneConfig
    from compress.pruning.config import PruneConfig as PruneConfig
    from compress.pruning.sensitivity import SensitivityConfig as SensitivityConfig
    from compress.quantization.context import QuantizeConfig as QuantizeConfig
    from compress.stages.common import ModelRef as ModelRef
    from compress.stages.deploy import DeployConfig as DeployConfig
    from compress.stages.evaluate import EvalConfig as EvalConfig
    from compress.stages.predict import PredictConfig as PredictConfig
    from compress.training.config import TrainConfig as TrainConfig


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'compress' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
