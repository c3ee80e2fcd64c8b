"""Layers a distill stage trained on the int4 grid (`compress distill --int4-layers`) take int4.

The card's last distill entry names the layers and block size; each is found in the fp32 ONNX
graph and kept at 4 bits (unless `--layer-bits`/`--keep-float` decide) only if its weights still
lie on that grid (a later stage, say pruning, would have moved them).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.quantization import graph as qgraph
from compress.quantization.context import QuantizeConfig
from compress.quantization.int4 import out_axis, weighted_layers
from compress.training.int4_grid import on_grid

log = logging.getLogger(__name__)


def trained_int4(history: list[dict[str, Any]]) -> tuple[list[str], int]:
    """(module names, block size) from the latest distill entry; ([], 0) when none asked."""
    for entry in reversed(history):
        if entry.get("stage") == "distill":
            kd = entry.get("kd") or {}
            return list(kd.get("int4_layers") or []), int(kd.get("int4_block_size") or 0)
    return [], 0


def module_of(node: str) -> str:
    """The module a TorchScript-exported node came from: `/fc1/first/MatMul` -> `fc1.first`,
    `/features/features.0/Conv` -> `features.0` (the exporter scopes by attribute name, and
    Sequential children by their full path)."""
    path = ""
    for part in node.strip("/").split("/")[:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path


def grid_nodes(model: Any, modules: list[str], block_size: int) -> dict[str, str]:
    """ONNX node -> module for each named module whose weight in `model` is on the int4 grid."""
    nodes = {n.name: n for n in model.graph.node}
    found: dict[str, str] = {}
    for name in weighted_layers(model):
        module = module_of(name)
        if module not in modules:
            continue
        w = qgraph.initializer(model.graph, nodes[name].input[1]).astype(np.float32)
        # torch layout (out, in, ...): the ONNX weight transposed unless its out axis is 0
        torch_w = torch.from_numpy(np.ascontiguousarray(w if out_axis(nodes[name]) == 0 else w.T))
        if on_grid(torch_w, block_size):
            found[name] = module
        else:
            log.warning("%s was trained on the int4 grid but its weights have moved off it", module)
    return found


def with_trained_int4(
    cfg: QuantizeConfig, fp32: Path, history: list[dict[str, Any]]
) -> tuple[QuantizeConfig, list[str]]:
    """`cfg` with the grid-trained layers at 4 bits (unless set otherwise), a note for each;
    `fp32` (the ONNX file to quantize) is read only when the card names grid-trained layers."""
    modules, block = trained_int4(history)
    if not modules or cfg.weight_bits == "auto" or cfg.method != "ptq-static":
        return cfg, []  # --bits auto measures them like any layer; only ptq-static takes int4
    found = grid_nodes(qgraph.load(fp32), modules, block)
    if not found:
        return cfg, []
    set_by_user = {**dict.fromkeys(cfg.keep_float, 32), **cfg.layer_bits}
    picked = {n: m for n, m in found.items() if n not in set_by_user}
    notes = [
        f"{m} ({n}): int4, trained on onnxruntime's int4 grid (block {block}) by the distill "
        "stage, so quantizing it loses nothing"
        if set_by_user.get(n, 4) == 4
        else f"{m} ({n}) was trained on the int4 grid but is stored at {set_by_user[n]} bits "
        "(--layer-bits / --keep-float)"
        for n, m in found.items()
    ]
    if block != cfg.block_size:
        notes.append(
            f"the int4 layers were trained with block {block} but --block-size is "
            f"{cfg.block_size}: their rounding is not the trained one"
        )
        log.warning(notes[-1])
    return replace(cfg, layer_bits={**cfg.layer_bits, **dict.fromkeys(picked, 4)}), notes


def untrained_hint(layer_bits: dict[str, int], history: list[dict[str, Any]]) -> list[str]:
    """A note naming the int4 layers that were rounded after training, and how to train them
    on the grid instead (measured on LeNet-5: +0.20 pt test, benchmarks/results/lenet5-size.md)."""
    trained, _ = trained_int4(history)
    rounded = [module_of(n) for n, b in layer_bits.items() if b == 4]
    rounded = [m for m in rounded if m and m not in trained]
    if not rounded:
        return []
    return [
        f"int4 rounded after training: {', '.join(rounded)}; `compress distill --int4-layers "
        f"{','.join(rounded)}` (or a recipe's distill `int4_layers`) trains them on the int4 grid "
        "first, so quantizing them loses nothing"
    ]
