"""The doctor's runtime facts (fusions, per-node time and execution provider) from onnxruntime, in a
child process, so a runtime that crashes on the model becomes a finding, not a dead CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from compress.export.doctor.diagnosis import FLOAT_COMPUTE
from compress.models.jsontypes import JsonObject


def session_facts_isolated(path: str | Path, runtime: str, threads: int) -> JsonObject:
    """`session_facts` in a child process; a crash or error becomes `{"error": ...}`."""
    from compress.export.runtimes.probe import last_line, run_child, signal_name

    try:
        proc = run_child("compress.export.doctor.probe", [str(path), runtime, str(threads)], 600)
    except subprocess.TimeoutExpired:
        return {"error": "onnxruntime did not finish profiling within 600 s"}
    last = last_line(proc.stdout)
    if proc.returncode == 0 and last.startswith("{"):
        facts: JsonObject = json.loads(last)
        return facts
    if proc.returncode < 0:
        return {"error": f"onnxruntime crashed ({signal_name(proc.returncode)})"}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"the profiling process failed (exit {proc.returncode}): {tail[:300]}"}


def session_facts(path: str, runtime: str, threads: int) -> JsonObject:
    """Open the model twice: once to save the optimized graph, once to profile 3 runs. The JSON
    the child prints (the doctor's report keeps it as is)."""
    import onnx

    from compress.export.runtimes.runner import create_session
    from compress.models.errors import CompressError

    try:
        with tempfile.TemporaryDirectory(prefix="compress-doctor-") as tmp:
            opt = Path(tmp) / "optimized.onnx"
            create_session(
                path, runtime, threads, optimization="extended", optimized_model_path=opt
            )
            graph = onnx.load(str(opt), load_external_data=False).graph
            runner = create_session(path, runtime, threads, profile=True)
            shape = [s if isinstance(s, int) and s > 0 else 1 for s in runner.input_shape]
            x = np.zeros(shape, dtype=runner.input_dtype)
            for _ in range(4):
                runner.run(x)
            prof = runner.session.end_profiling()
            events = json.loads(Path(prof).read_text())
            Path(prof).unlink(missing_ok=True)
    except CompressError as e:
        return {"error": str(e).splitlines()[0]}
    per_provider: dict[str, Counter[str]] = {}
    time_by_op: Counter[str] = Counter()
    seen: set[str] = set()
    for ev in events:
        args = ev.get("args", {})
        if ev.get("cat") != "Node" or "op_name" not in args:
            continue
        if ev["name"] not in seen:  # first run: the warm-up; count where each node ran
            seen.add(ev["name"])
            per_provider.setdefault(args.get("provider", "?"), Counter())[args["op_name"]] += 1
        else:
            time_by_op[args["op_name"]] += ev.get("dur", 0) / 3  # mean of the 3 timed runs
    ends = {i.name for i in graph.input} | {o.name for o in graph.output}
    inner = [
        n
        for n in graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        and not ends & {*n.input[:1], *n.output}
    ]
    return {
        "providers": runner.providers,
        "inner_qdq": len(inner),
        "fallback": runner.fallback,
        "optimized_ops": dict(Counter(n.op_type for n in graph.node)),
        "float_compute": [n.name or n.op_type for n in graph.node if n.op_type in FLOAT_COMPUTE],
        "node_providers": {p: dict(c) for p, c in per_provider.items()},
        "time_by_op": {k: round(v, 1) for k, v in time_by_op.items()},
    }


if __name__ == "__main__":
    print(json.dumps(session_facts(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
