"""Middle layer of `compress`: ONNX export with parity gates, runtimes, benchmarks, the doctor.

Imports only `models/` (plus torch, onnx and onnxruntime, loaded lazily where heavy), so the
stage functions in `compress.stages` and user code can both build on it.
"""
