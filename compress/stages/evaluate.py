"""`compress eval`: metrics of a PyTorch or ONNX artifact on a split of real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.stages.common import ModelRef, data_config_for, load_source
from compress.training.evaluate import EvalResult, Predictor, evaluate, torch_predictor
from models.artifact import is_artifact, read_card
from models.data import DataConfig, load_data
from models.errors import UsageError
from models.registry import ModelSpec

SPLITS = ("test", "val", "train")


def run_eval(
    ref: ModelRef, data: DataConfig | None, split: str = "test", limit: int | None = None
) -> dict[str, Any]:
    """Evaluate `ref` on `split`; ONNX artifacts run in onnxruntime, others in PyTorch."""
    if limit is not None and limit < 1:
        raise UsageError("--limit must be >= 1")
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}")
    predict, spec, card = _predictor(ref, data)
    bundle = load_data(data_config_for(data, card), spec)
    result: EvalResult = evaluate(predict, bundle.loader(split), spec.num_classes, limit=limit)
    return {
        "model": ref.model,
        "split": split,
        "dataset": bundle.describe(),
        "class_names": bundle.class_names,
        **result.to_dict(),
    }


def _predictor(ref: ModelRef, data: DataConfig | None) -> tuple[Predictor, ModelSpec, Any]:
    bare_onnx = ref.model.endswith(".onnx") and Path(ref.model).is_file()
    if bare_onnx or (is_artifact(ref.model) and read_card(ref.model).kind == "onnx"):
        from export.runtime import onnx_artifact_predictor  # lazy: onnxruntime is heavy

        predict, card = onnx_artifact_predictor(ref.model)
        return predict, card.model_spec, card
    src = load_source(ref, data)
    return torch_predictor(src.model), src.model.spec, src.card  # type: ignore[return-value]
