"""Ground floor of `compress`: the model zoo, data, artifact format and errors.

Importing `models` (or `models.errors`) is cheap: the zoo, which needs torch, loads on first use
of one of the names below, so `compress --help` never imports torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.errors import CompressError
    from models.registry import ModelSpec, create_model, list_models, register_model

__all__ = ["CompressError", "ModelSpec", "create_model", "list_models", "register_model"]
_HOME = {
    "CompressError": "models.errors",
    "ModelSpec": "models.registry",
    "create_model": "models.registry",
    "list_models": "models.registry",
    "register_model": "models.registry",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
