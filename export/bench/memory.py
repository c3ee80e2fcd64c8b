"""Memory of one benchmark case: this process's peak RSS (reset per case through
/proc/self/clear_refs) and, on CUDA runtimes, device memory."""

from __future__ import annotations

import contextlib
from pathlib import Path


class CaseMemory:
    """Peak RSS of this process during a case (Linux: VmHWM reset via clear_refs), CUDA peak."""

    def __init__(self, runtime: str) -> None:
        self.cuda = "cuda" in runtime or "trt" in runtime
        self.peak_mb: float | None = None
        self.delta_mb: float | None = None
        self.cuda_mb: float | None = None
        self._before = 0.0

    def __enter__(self) -> CaseMemory:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        self._before = _rss_mb()
        if self.cuda:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_mb = round(_peak_rss_mb(), 1)
        self.delta_mb = round(max(0.0, self.peak_mb - self._before), 1)
        if self.cuda:
            import torch

            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info()
                alloc = torch.cuda.max_memory_allocated() / 2**20
                self.cuda_mb = round(max(alloc, (total - free) / 2**20), 1)


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return _rss_mb()
