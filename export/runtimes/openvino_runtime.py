"""OpenVINO runtimes (`openvino`, `openvino-gpu`, `openvino-npu`) behind the Runner interface, on
our ONNX files as they are. Unhinted, OpenVINO picks bf16 itself on CPUs with native bf16, so the
runner records the *effective* precision."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.export.runtimes.batching import Runner, check_input_shape
from compress.export.runtimes.sigstack import kept_sigaltstack
from compress.models.errors import InvalidInputError, UnsupportedError

log = logging.getLogger(__name__)

OV_DEVICES = {"openvino": "CPU", "openvino-gpu": "GPU", "openvino-npu": "NPU"}
INSTALL_HINT = "pip install openvino"
DEVICE_HINTS = {
    "GPU": "an Intel GPU with its OpenCL driver (intel-opencl-icd), or use --runtime openvino",
    "NPU": "an Intel NPU with its driver (intel-npu-driver), or use --runtime openvino",
}
OV_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
OV_NAMES = {v: k for k, v in OV_HINTS.items()}


def ov_core() -> Any:
    """An `openvino.Core`; UnsupportedError (exit 4) naming the install when it is missing."""
    try:
        import openvino as ov
    except ImportError as e:
        raise UnsupportedError(
            f"the openvino runtime is not installed ({e})", hint=INSTALL_HINT
        ) from e
    return ov.Core()


def check_openvino(runtime: str) -> str:
    """The OpenVINO device of `runtime` when installed and present here, else exit 4."""
    device = OV_DEVICES[runtime]
    with kept_sigaltstack():  # the plugin swaps this thread's signal stack
        core = ov_core()
        available = list(core.available_devices)
        del core
    if not any(d == device or d.startswith(device + ".") for d in available):
        raise UnsupportedError(
            f"--runtime {runtime}: OpenVINO sees no {device} device here "
            f"(available: {', '.join(available) or 'none'})",
            hint=DEVICE_HINTS.get(device, INSTALL_HINT),
        )
    return device


@dataclass
class OvRunner(Runner):
    """A compiled OpenVINO model plus the facts a benchmark must report about it."""

    compiled: Any
    request: Any
    path: str
    device: str
    input_shape: list[int | str]
    input_dtype: np.dtype
    precision: str | None  # asked for (None: OpenVINO's default)
    effective_precision: str  # what the compiled model runs (fp32, bf16, fp16)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch (a copy: OpenVINO reuses its output buffer)."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        check_input_shape(x.shape, self.input_shape, self.path)
        import openvino as ov

        try:  # shared input memory: measured ~25% less per-call overhead than infer({0: x})
            self.request.set_input_tensor(ov.Tensor(x, shared_memory=True))
            self.request.infer()
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise InvalidInputError(f"OpenVINO failed running {self.path}: {first}") from e
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def close(self) -> None:
        """Release the compiled model now, keeping this thread's signal stack."""
        with kept_sigaltstack():
            self.request = None
            self.compiled = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the modules may be gone
            self.close()


def create_ov_runner(
    path: str | Path,
    runtime: str = "openvino",
    threads: int | None = None,
    precision: str | None = "fp32",
) -> OvRunner:
    """Read `path` (ONNX) into OpenVINO and compile it for `runtime`'s device at `precision`."""
    from compress.export.runtimes.session import inspect_onnx

    device = check_openvino(runtime)
    info = inspect_onnx(path)
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if precision is not None:
        if precision not in OV_HINTS:
            raise UnsupportedError(f"OpenVINO has no {precision} precision hint for {path}")
        config["INFERENCE_PRECISION_HINT"] = OV_HINTS[precision]
    with kept_sigaltstack():
        core = ov_core()
        t0 = time.perf_counter()
        try:
            compiled, request = compile_ov(core, path, device, config)
        finally:
            del core
    seconds = time.perf_counter() - t0
    effective = effective_precision(compiled)
    runner = OvRunner(
        compiled=compiled,
        request=request,
        path=str(path),
        runtime=runtime,
        device=device,
        providers=[f"OpenVINO {device} ({effective})"],
        create_seconds=seconds,
        input_shape=info.input_shape,
        input_dtype=np.dtype(info.input_dtype),
        precision=precision,
        effective_precision=effective,
    )
    if precision is not None and effective != precision:
        note = f"{runtime}: asked for {precision}, OpenVINO runs {effective}"
        runner.notes.append(note)
        log.warning("%s", note)
    return runner


def compile_ov(core: Any, path: str | Path, device: str, config: dict[str, Any]) -> tuple[Any, Any]:
    """(compiled model, infer request) for `path` on `device`; typed errors naming the stage."""
    try:
        model = core.read_model(str(path))
    except Exception as e:
        raise ov_error("read", path, e) from e
    try:
        compiled = core.compile_model(model, device, config)
    except Exception as e:
        raise ov_error("compile", path, e) from e
    return compiled, compiled.create_infer_request()


def effective_precision(compiled: Any) -> str:
    """The precision a compiled model computes in, in our names (fp32, bf16, fp16)."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except Exception:  # some devices (NPU) do not report it
        return "unknown"
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return OV_NAMES.get(name, name)


def ov_error(stage: str, path: str | Path, e: Exception) -> UnsupportedError:
    """OpenVINO's multi-line exception as one line naming the runtime and the op(s)."""
    msg = str(e)
    ops = re.search(r"No conversion rule found for operations?:\s*([^\n]+)", msg)
    if ops:
        what = f"has no conversion for op {ops.group(1).strip()}"
    else:
        lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
        what = f"failed: {(useful or lines or [type(e).__name__])[-1][:300]}"
    return UnsupportedError(
        f"OpenVINO could not {stage} {path}: {what}",
        hint="run it on onnxruntime (--runtime ort-cpu), or `compress doctor` to list its ops",
    )
