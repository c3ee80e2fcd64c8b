"""Ground floor of `compress`: the model zoo, data, artifact format and errors."""

from models.errors import CompressError
from models.registry import ModelSpec, create_model, list_models, register_model

__all__ = ["CompressError", "ModelSpec", "create_model", "list_models", "register_model"]
