"""`compress doctor`: why a model is or isn't fast on this machine, with what to do about it.

Static checks read the ONNX graph; runtime checks open it in onnxruntime in a child process (a
crashing runtime becomes a finding, not a dead CLI). This module assembles the `Diagnosis`; the
checks live in `compress.export.doctor.checks`, the probe in `compress.export.doctor.probe`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compress.export.doctor.checks import CHECKS
from compress.export.doctor.diagnosis import QUANT_OPS, Diagnosis, Finding
from compress.export.doctor.probe import session_facts, session_facts_isolated
from compress.export.doctor.rank import artifact_precision, rank_runtimes, spec_for_ranking
from compress.export.environment import cpu_info, isa_flags, physical_cores
from compress.export.runtimes.runner import ORT_PROVIDERS, check_runtime, inspect_onnx
from compress.export.runtimes.session import OnnxInfo
from compress.models.errors import UsageError
from compress.models.options import check_options, option


@dataclass(frozen=True)
class DoctorConfig:
    """Which onnxruntime session to diagnose, its threads, and whether to rank the runtimes."""

    runtime: str = option(
        "ort-cpu",
        "The onnxruntime session whose graph is diagnosed: ort-cpu, ort-cuda or ort-trt. "
        "(--rank also times the ONNX runtimes available here: ort-*, openvino, openvino-gpu, "
        "openvino-npu.)",
        flag=("--runtime", "-r"),
    )
    threads: int | None = option(
        None, "Intra-op threads for every runtime (default: physical cores).", min=1
    )
    rank: bool = option(
        False,
        "Also time every ONNX runtime x precision (fp32, bf16, int8, ...) this machine "
        "has (a few seconds) and name the fastest, and why.",
    )

    def __post_init__(self) -> None:
        if self.runtime not in ORT_PROVIDERS:
            raise UsageError(f"doctor diagnoses onnxruntime runtimes ({', '.join(ORT_PROVIDERS)})")
        check_options(self, flags=True)


def diagnose(
    path: str | Path, config: DoctorConfig | None = None, *, isolate: bool = True, **options: Any
) -> Diagnosis:
    """Examine an ONNX file for `config.runtime` on this machine; runtime checks in a child
    process (`isolate`); `options` override `config`'s fields (`rank=True`, ...)."""
    import onnx

    cfg = replace(config or DoctorConfig(), **options)
    check_runtime(cfg.runtime)
    info = inspect_onnx(path)
    threads = cfg.threads or physical_cores()
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = Counter(n.op_type for n in graph.node)
    facts = session_facts_isolated if isolate else session_facts
    session = facts(str(path), cfg.runtime, threads)
    d = Diagnosis(
        model=str(path),
        runtime=cfg.runtime,
        threads=threads,
        cpu=cpu_info()[0],
        isa=isa_flags(),
        quantized=bool(QUANT_OPS & set(ops)),
        op_counts=dict(ops.most_common()),
        session=session,
    )
    for check in CHECKS:
        d.findings.extend(check(d, graph, info))
    if cfg.rank:
        d.findings.append(_rank(d, path, info, threads))
    return d


def _rank(d: Diagnosis, path: str | Path, info: OnnxInfo, threads: int) -> Finding:
    spec = spec_for_ranking(info)
    if spec is None:
        return Finding(
            "fastest_runtime",
            "info",
            "runtimes not ranked: the input's channels/size are symbolic",
            suggestion="`compress bench -m FILE --input-size N --in-channels C -r ort-cpu "
            "-r openvino --precision fp32,bf16` ranks them",
        )
    d.ranking, finding = rank_runtimes(path, spec, artifact_precision(info, d.quantized), threads)
    return finding
