"""What `compress deploy` prints about speed-ups: both p50s, and slower said in words."""

from __future__ import annotations

from compress.cli.deploy_cmd import speedup_line

SPEEDUP = {"batch_size": 1, "p50_ms": 0.045}


def test_a_slower_deploy_is_called_slower() -> None:
    sp = {"speedup": 0.44, "label": "vs the dense baseline", "baseline": "ort-cpu/fp32/1t"}
    line = speedup_line({**sp, "baseline_p50_ms": 0.02}, SPEEDUP)
    assert "0.44x" in line and "0.020 -> 0.045 ms" in line and "batch 1" in line
    assert "SLOWER than the baseline" in line


def test_a_faster_deploy_is_not_called_slower() -> None:
    sp = {"speedup": 2.0, "label": "vs x", "baseline": "ort-cpu/fp32/1t", "baseline_p50_ms": 0.09}
    assert "SLOWER" not in speedup_line(sp, SPEEDUP)
