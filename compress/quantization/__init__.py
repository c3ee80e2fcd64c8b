"""Quantization: onnxruntime int8 PTQ, fp16, QAT fake-quant, calibration, fallback, ISA."""
