"""Reading weights safely: safetensors, `weights_only` PyTorch files, and refusal of pickles.
Every failure a user can cause (truncated, git-lfs pointer, HTML page, unsafe pickle, another
architecture's state_dict, NaN/Inf) becomes a typed WeightsError with one clear line."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from compress.models.errors import ArchitectureMismatchError, UnsafePickleError, WeightsError

log = logging.getLogger(__name__)
StateDict = dict[str, torch.Tensor]


def sniff(path: Path) -> None:
    """Reject files that are obviously not weights before any parser sees them."""
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    head = path.read_bytes()[:512] if path.stat().st_size else b""
    if not head:
        raise WeightsError(f"{path} is empty")
    if head.startswith(b"version https://git-lfs"):
        raise WeightsError(
            f"{path} is a git-lfs pointer, not the weights",
            hint="run `git lfs pull` to fetch the real file",
        )
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"{")):
        kind = "JSON" if text.startswith(b"{") else "an HTML/XML page"
        raise WeightsError(
            f"{path} is {kind}, not a weights file",
            hint="the download probably returned an error or login page",
        )


def read_state_dict(path: str | Path, *, trust_pickle: bool = False) -> StateDict:
    """Tensors from .safetensors or a .pt/.pth/.bin state_dict (code unpickled only if trusted)."""
    path = Path(path)
    sniff(path)
    obj: object = (
        _read_safetensors(path)
        if path.suffix == ".safetensors"
        else _read_torch(path, trust_pickle)
    )
    return _unwrap(obj, path)


def _read_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(
            f"{path} is not a valid safetensors file (truncated or corrupt): {e}"
        ) from e


def _read_torch(path: Path, trust_pickle: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise UnsafePickleError(
                f"{path} needs arbitrary Python code to load (a pickled object, not plain "
                "tensors); refused",
                hint="if you trust its source, pass --trust-pickle",
            ) from e
        log.warning("loading %s with full unpickling because --trust-pickle was given", path)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:
            raise WeightsError(f"{path} could not be unpickled: {e2}") from e2
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint (truncated or "
            f"corrupt): {str(e).splitlines()[0]}"
        ) from e


def _unwrap(obj: object, path: Path) -> StateDict:
    """Accept {'state_dict': …}/{'model': …} wrappers, whole modules (trusted), 'module.' keys."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "weights"):
            if key in obj and isinstance(obj[key], (dict, nn.Module)):
                return _unwrap(obj[key], path)
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise WeightsError(f"{path} holds no state_dict (a dict of tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def check_finite(sd: StateDict, source: str) -> None:
    """Refuse NaN/Inf in floating tensors, naming the first offending ones."""
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise WeightsError(f"{source} has NaN/Inf values in {', '.join(bad[:3])}{more}")


def mismatch_summary(model: nn.Module, sd: StateDict) -> str | None:
    """None if `sd` fits `model` exactly; else one line listing missing/unexpected/mismatched."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shaped = [k for k in own if k in sd and own[k].shape != sd[k].shape]
    found = {"missing": missing, "unexpected": unexpected, "shape-mismatched": shaped}
    msg = "; ".join(f"{len(v)} {k} (e.g. {', '.join(v[:3])})" for k, v in found.items() if v)
    if not shaped or missing or unexpected:
        return msg or None
    if all(sd[k].numel() <= own[k].numel() for k in shaped):
        return msg + (
            "; every mismatched tensor is smaller: this looks like a pruned checkpoint "
            "loaded into the dense model (load the pruned artifact directory instead)"
        )
    k = shaped[0]
    return f"{msg}; e.g. {k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"


def load_into(model: nn.Module, sd: StateDict, source: str) -> None:
    """Strict load with a readable summary instead of PyTorch's wall of keys."""
    check_finite(sd, source)
    summary = mismatch_summary(model, sd)
    if summary:
        raise ArchitectureMismatchError(
            f"{source} does not fit {getattr(getattr(model, 'spec', None), 'name', 'the model')}:"
            f" {summary}",
            hint="check --model, --num-classes, --in-channels and --input-size",
        )
    model.load_state_dict(sd, strict=True)
