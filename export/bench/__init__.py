"""Benchmarks: the timing loop, cases and results, baselines, memory, reports."""
