"""An ONNX file on disk: checked saving, external data (`<name>.onnx.data` past protobuf's 2 GB),
metadata (the card's key facts, prefixed `compress.`, so a bare `.onnx` describes itself), size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.models.errors import InvalidInputError, UnsupportedError

# Our optimization levels -> onnxruntime's GraphOptimizationLevel (sessions read it too).
OPTIMIZE_LEVELS = {
    "none": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
META_PREFIX = "compress."


def set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Add or overwrite metadata_props on an in-memory model."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)


def check_and_save(proto: Any, path: Path, external_threshold: int = 1_800_000_000) -> None:
    """Shape-infer, save (external data when large) and run the full checker on the file."""
    import onnx

    weights = initializer_bytes(proto)
    external = weights > external_threshold
    if not external:
        try:
            proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        except Exception as e:
            raise UnsupportedError(f"ONNX shape inference failed on the export: {e}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    data = external_data_path(path)
    data.unlink(missing_ok=True)
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise UnsupportedError(
            f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}"
        ) from e
    if external:
        onnx.shape_inference.infer_shapes_path(str(path), str(path))


def opset_of(proto: Any) -> int:
    """The default-domain (ai.onnx) opset a model is stamped with."""
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def initializer_bytes(proto: Any) -> int:
    import numpy as np
    from onnx import helper

    total = 0
    for t in proto.graph.initializer:
        if t.raw_data:
            total += len(t.raw_data)
        else:
            n = int(np.prod(t.dims)) if t.dims else 1
            total += n * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    return total


def external_data_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".data")


def onnx_size(path: str | Path) -> int:
    """Bytes on disk, external data included."""
    path = Path(path)
    data = external_data_path(path)
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def read_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props (weights not loaded)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise InvalidInputError(f"{path} is not a readable ONNX file: {e}") from e
    return {p.key: p.value for p in proto.metadata_props}


def card_metadata(card: Any) -> dict[str, str]:
    """The card's key facts as ONNX metadata_props (strings; lists and dicts as JSON)."""
    a = card.architecture
    facts: dict[str, Any] = {
        "format": card.format,
        "architecture": a.name,
        "num_classes": a.num_classes,
        "in_channels": a.in_channels,
        "input_size": card.spec.get("input_size", a.input_size),  # H/W it was exported at
        "spec": card.spec,
        "class_names": card.class_names,
        "precision": card.precision,
        "trained": card.trained,
        "source_content_hash": card.content_hash,
        "stages": [h.get("stage") for h in card.history],
    }
    if card.metrics:
        facts["metrics"] = {
            k: v.get("top1") for k, v in card.metrics.items() if isinstance(v, dict) and "top1" in v
        }
    if card.dataset:
        facts["dataset"] = card.dataset.get("dataset")
    return {META_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in facts.items()}
