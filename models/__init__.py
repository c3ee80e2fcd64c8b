"""Ground floor of `compress`: the model zoo, data, artifact format and errors.

Importing `models` (or `compress.models.errors`) is cheap: the zoo, which needs torch, loads on first use
of one of the names below, so `compress --help` never imports torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compress.models.errors import CompressError
    from compress.models.zoo.registry import ModelSpec, create_model, list_models, register_model

__all__ = ["CompressError", "ModelSpec", "create_model", "list_models", "register_model"]
_HOME = {
    "CompressError": "compress.models.errors",
    "ModelSpec": "compress.models.zoo.registry",
    "create_model": "compress.models.zoo.registry",
    "list_models": "compress.models.zoo.registry",
    "register_model": "compress.models.zoo.registry",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
