"""`compress export`: a PyTorch model (zoo name or artifact) -> an ONNX artifact, parity-gated.

The artifact is `model.onnx` + `card.json` (the lineage continued). The parity gate compares
onnxruntime with PyTorch on validation images (random inputs for an untrained model); a failed
gate keeps the artifact, marks its card and raises QualityGateError (exit code 5).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.export.onnx.convert import ExportConfig, export_onnx
from compress.export.onnx.file import card_metadata, external_data_path, onnx_size
from compress.export.onnx.parity import ParityReport, check_parity
from compress.export.runtimes.runner import create_session, run_batched, torch_runner
from compress.export.runtimes.session import optimize_offline
from compress.models.artifacts.artifact import ONNX, Card, write_card
from compress.models.artifacts.resolve import ModelSource
from compress.models.data.datasets import (
    DataBundle,
    DataConfig,
    iterate_inputs,
    load_data,
    synthetic_batch,
)
from compress.models.errors import QualityGateError
from compress.models.jsontypes import JsonObject
from compress.models.zoo.registry import ModelSpec
from compress.pruning.flops import count_params
from compress.stages.common import Model, card_for, data_config_for, load_source_at
from compress.stages.frame import stage_output
from compress.stages.results import ExportSummary

log = logging.getLogger(__name__)
PARITY_BATCH = 32


def run_export(
    model: Model,
    out: str | Path,
    config: ExportConfig | None = None,
    data: DataConfig | None = None,
    *,
    overwrite: bool = False,
) -> ExportSummary:
    """Export `model`, check, parity-gate and write the ONNX artifact `out`; returns a summary
    (`compress.export_onnx`, `compress export`). With `config.input_size` the file takes that
    H/W (the parity gate runs there too, on validation images resized to it) and its card's
    spec says so. One process exports (a recipe runs it on rank 0)."""
    cfg = config or ExportConfig()
    with stage_output(out, overwrite, collective=False) as frame:
        src = load_source_at(model, data, cfg.input_size)
        net = src.model.eval()
        spec: ModelSpec = net.spec  # type: ignore[assignment]
        bundle = load_data(data_config_for(data, src.card), spec) if src.trained else None
        inputs, batches = _parity_inputs(bundle, spec, cfg)
        card = card_for(src, bundle)
        card.kind, card.precision = "onnx", cfg.precision
        gates: dict[str, ParityReport] = {}
        with frame.directory() as tmp:
            path = tmp / ONNX
            result = export_onnx(net, path, cfg, metadata=card_metadata(card))
            if cfg.optimize != "none":
                gates["parity_unoptimized"] = _parity(net, path, batches, cfg, inputs)
                _optimize_in_place(path, cfg.optimize)
                result.optimized, result.bytes = cfg.optimize, onnx_size(path)
            gates["parity"] = _parity(net, path, batches, cfg, inputs)
            result.path = str(Path(out) / ONNX)
            _record(card, src, cfg, result.to_dict(), gates)
            write_card(tmp, card)
    parity = gates["parity"]
    summary = ExportSummary(
        out=str(out),
        params=count_params(net),
        export=result.to_dict(),
        parity=parity.to_dict(),
        parity_summary=parity.summary(),
        gates={k: v.passed for k, v in gates.items()},
    )
    failed = [k for k, v in gates.items() if not v.passed]
    if failed:
        raise QualityGateError(
            f"{failed[0]} gate failed: {gates[failed[0]].summary()}",
            hint=f"the artifact was kept at {out} and marked in card.json (gates.{failed[0]})",
            artifact=str(out),
        )
    return summary


def _record(
    card: Card, src: ModelSource, cfg: ExportConfig, result: JsonObject, gates: dict[str, Any]
) -> None:
    """The ONNX artifact's card: its gates and the export history entry."""
    for name, rep in gates.items():
        card.gates[name] = rep.to_dict()
    card.add_history(
        "export",
        source=src.ref,
        source_content_hash=src.card.content_hash if src.card else None,
        config=asdict(cfg),
        result=result,
        parity=gates["parity"].summary(),
        metrics_note="metrics are the PyTorch parent's (parity-gated); "
        "re-measure with `compress eval`",
    )


def _parity_inputs(
    bundle: DataBundle | None, spec: ModelSpec, cfg: ExportConfig
) -> tuple[str, list[np.ndarray]]:
    """Validation images when the model is trained, else seeded random inputs."""
    if bundle is not None:
        real = torch.cat(list(iterate_inputs(bundle.loader("val"), cfg.parity_samples)))
        return "val", _split(real, cfg)
    return "random", _split(synthetic_batch(spec, cfg.parity_samples, seed=0), cfg)


def _split(x: torch.Tensor, cfg: ExportConfig) -> list[np.ndarray]:
    """Batch 1 first (catches batch-1 special cases), then batches of 32 (or the static size)."""
    arr = x.numpy().astype(np.float32)
    if not cfg.dynamic_batch:
        return [arr[i : i + cfg.static_batch] for i in range(0, len(arr), cfg.static_batch)]
    return [arr[:1]] + [arr[i : i + PARITY_BATCH] for i in range(1, len(arr), PARITY_BATCH)]


def _parity(
    model: Any, path: Path, batches: list[np.ndarray], cfg: ExportConfig, inputs: str
) -> ParityReport:
    ort, reference = create_session(path, "ort-cpu"), torch_runner(model).run
    report = check_parity(reference, lambda x: run_batched(ort, x), batches, cfg.precision, inputs)
    log.debug("%s", report.summary())
    return report


def _optimize_in_place(path: Path, level: str) -> None:
    if external_data_path(path).exists():
        log.warning("--optimize skipped: models with external data (> 2 GB) are left as exported")
        return
    tmp = path.with_name("optimized.onnx")
    optimize_offline(path, tmp, level)
    os.replace(tmp, path)
