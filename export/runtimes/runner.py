"""Runtimes behind one interface, `runner.run(x: np.ndarray) -> np.ndarray`; `RUNTIMES` is the
registry (`TORCH_RUNTIMES` take a module, `ONNX_RUNTIMES` ONNX files). An onnxruntime session that
silently fell back (asked for CUDA, got CPU) is warned about and flagged in every result."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.export.runtimes.batching import Runner as Runner  # re-exported
from compress.export.runtimes.batching import autocast, check_input_shape
from compress.export.runtimes.batching import run_batched as run_batched  # re-exported
from compress.export.runtimes.openvino_runtime import (
    OV_DEVICES,
    OvRunner,
    check_openvino,
    create_ov_runner,
)
from compress.export.runtimes.session import inspect_onnx, open_session
from compress.models.errors import InvalidInputError, UnsupportedError, UsageError

log = logging.getLogger(__name__)

ORT_PROVIDERS: dict[str, list[str]] = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
TORCH_RUNTIMES = ("torch", "torch-cuda", "torch-compile")
OV_RUNTIMES = tuple(OV_DEVICES)
ONNX_RUNTIMES = (*ORT_PROVIDERS, *OV_RUNTIMES)
RUNTIMES = (*TORCH_RUNTIMES, *ONNX_RUNTIMES)
GPU_HINT = "install onnxruntime-gpu (with a CUDA GPU and drivers), or use --runtime ort-cpu"


def check_runtime(name: str) -> str:
    """Validate a runtime name and that this machine can run it (UsageError / UnsupportedError)."""
    if name not in RUNTIMES:
        raise UsageError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")
    if name == "torch-cuda":
        import torch

        if not torch.cuda.is_available():
            raise UnsupportedError(
                "--runtime torch-cuda: no CUDA GPU is available", hint="use --runtime torch"
            )
    elif name in OV_DEVICES:
        check_openvino(name)
    elif name == "torch-compile":
        from compress.export.runtimes.torch_compile import check_torch_compile

        check_torch_compile()
    elif name in ("ort-cuda", "ort-trt"):
        import onnxruntime as ort

        wanted = ORT_PROVIDERS[name][0]
        if wanted not in ort.get_available_providers():
            raise UnsupportedError(
                f"--runtime {name}: onnxruntime here has no {wanted} "
                f"(available: {', '.join(ort.get_available_providers())})",
                hint=GPU_HINT,
            )
    return name


def available_runtimes(names: tuple[str, ...] = RUNTIMES) -> list[str]:
    """The runtimes of `names` this machine can run now (installed, device present), in order."""
    from compress.models.errors import CompressError

    out = []
    for name in names:
        with contextlib.suppress(CompressError):
            out.append(check_runtime(name))
    return out


# ----------------------------------------------------------------------------- onnxruntime


@dataclass
class OrtRunner(Runner):
    """An onnxruntime session plus the facts a benchmark must report about it."""

    session: Any
    path: str
    requested: list[str]
    input_name: str
    input_shape: list[int | str]
    input_dtype: np.dtype

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch; shapes are checked so mismatches read as one line."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        check_input_shape(x.shape, self.input_shape, self.path)
        try:
            return self.session.run(None, {self.input_name: x})[0]
        except Exception as e:
            first = str(e).strip().splitlines()[0]
            raise InvalidInputError(f"onnxruntime failed running {self.path}: {first}") from e


def create_session(
    path: str | Path, runtime: str = "ort-cpu", threads: int | None = None, **options: Any
) -> OrtRunner:
    """Open `path` in onnxruntime on `runtime`'s providers (`options`: `open_session`'s);
    record the providers really used."""
    if runtime not in ORT_PROVIDERS:
        raise UsageError(f"{runtime!r} is not an onnxruntime runtime ({', '.join(ORT_PROVIDERS)})")
    check_runtime(runtime)
    info = inspect_onnx(path)
    requested = ORT_PROVIDERS[runtime]
    t0 = time.perf_counter()
    session = open_session(path, threads, requested, **options)
    seconds = time.perf_counter() - t0
    used = list(session.get_providers())
    runner = OrtRunner(
        session=session,
        path=str(path),
        runtime=runtime,
        requested=requested,
        providers=used,
        create_seconds=seconds,
        input_name=session.get_inputs()[0].name,
        input_shape=info.input_shape,
        input_dtype=np.dtype(info.input_dtype),
    )
    if requested[0] not in used:
        runner.fallback = True
        note = f"{runtime}: asked for {requested[0]}, session runs on {', '.join(used)}"
        runner.notes.append(note)
        log.warning("%s (fell back)", note)
    return runner


# ----------------------------------------------------------------------------- torch


@dataclass
class TorchRunner(Runner):
    """PyTorch eager inference (inference mode, eval mode) behind the same `run` interface."""

    model: Any
    device: str
    precision: str = "fp32"  # bf16 / fp16: autocast on the device

    @property
    def effective_precision(self) -> str:
        return self.precision

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
            if self.device != "cpu":
                torch.cuda.synchronize()
            return out.float().cpu().numpy()


def torch_runner(
    model: Any,
    runtime: str = "torch",
    precision: str = "fp32",
    *,
    example_shape: tuple[int, ...] | None = None,
) -> Runner:
    """Wrap a module for inference on CPU (`torch`), the first GPU (`torch-cuda`) or inductor
    (`torch-compile`, compiled now for `example_shape` when given) at `precision`."""
    from compress.export.runtimes.precision import refuse

    if runtime not in TORCH_RUNTIMES:
        raise UsageError(f"{runtime!r} is not a torch runtime ({', '.join(TORCH_RUNTIMES)})")
    check_runtime(runtime)
    refuse(runtime, precision)
    if runtime == "torch-compile":
        from compress.export.runtimes.torch_compile import torch_compile_runner

        return torch_compile_runner(model, precision, example_shape=example_shape)
    device = "cuda" if runtime == "torch-cuda" else "cpu"
    t0 = time.perf_counter()
    model = model.eval().to(device)
    seconds = time.perf_counter() - t0
    return TorchRunner(runtime, [device], seconds, model=model, device=device, precision=precision)


def onnx_runner(
    path: str | Path,
    runtime: str = "ort-cpu",
    threads: int | None = None,
    precision: str | None = None,
    artifact_precision: str = "fp32",
) -> OrtRunner | OvRunner:
    """An ONNX file on onnxruntime or OpenVINO at `precision` (None: as the file is); a pair this
    machine can't run is refused (UnsupportedError, with the reason)."""
    from compress.export.runtimes.precision import refuse

    if runtime not in ONNX_RUNTIMES:
        raise UsageError(f"{runtime!r} does not read ONNX files ({', '.join(ONNX_RUNTIMES)})")
    wanted = precision or artifact_precision
    refuse(runtime, wanted, artifact_precision)
    if runtime in OV_DEVICES:
        # int8/fp16 artifacts: the float parts in fp32 on CPU, the device's default elsewhere.
        hint: str | None = wanted
        if wanted not in ("fp32", "bf16"):
            hint = "fp32" if runtime == "openvino" else "fp16" if wanted == "fp16" else None
        runner = create_ov_runner(path, runtime, threads, hint)
        if wanted in ("int8", "fp16"):  # the hint governs only the ops left in float
            runner.effective_precision = f"{wanted} ({runner.effective_precision} float ops)"
        return runner
    return create_session(path, runtime, threads)


# ----------------------------------------------------------------------------- artifacts


def onnx_artifact_runner(
    path: str | Path,
    runtime: str = "ort-cpu",
    precision: str | None = None,
    threads: int | None = None,
) -> tuple[OrtRunner | OvRunner, Any]:
    """(runner, card) for an ONNX artifact directory or exported .onnx file on `runtime`."""
    from compress.models.artifacts.artifact import ONNX, is_artifact, read_card

    path = Path(path)
    if is_artifact(path):
        card = read_card(path)
        if card.kind != "onnx":
            raise InvalidInputError(f"{path} is a {card.kind} artifact, not an ONNX one")
        model_path = path / ONNX
    else:
        model_path, card = path, card_from_onnx(path)
    return onnx_runner(model_path, runtime, threads, precision, card.precision), card


def card_from_onnx(path: str | Path) -> Any:
    """Rebuild a card from the `compress.*` metadata_props an exported file carries."""
    from compress.export.onnx.file import META_PREFIX
    from compress.models.artifacts.artifact import Architecture, Card

    meta = inspect_onnx(path).metadata
    if META_PREFIX + "spec" not in meta:
        raise InvalidInputError(
            f"{path} carries no compress metadata (spec, classes), so its preprocessing is unknown",
            hint="export it with `compress export`, or evaluate the artifact directory",
        )
    spec = json.loads(meta[META_PREFIX + "spec"])
    return Card(
        kind="onnx",
        architecture=Architecture(
            name=meta.get(META_PREFIX + "architecture", spec.get("name", "?")),
            num_classes=int(spec["num_classes"]),
            in_channels=int(spec["in_channels"]),
            input_size=int(spec["input_size"]),
        ),
        spec=spec,
        class_names=json.loads(meta.get(META_PREFIX + "class_names", "[]")),
        precision=meta.get(META_PREFIX + "precision", "fp32"),
        trained=meta.get(META_PREFIX + "trained", "false") == "true",
    )
