"""Runtimes behind one Runner interface: onnxruntime, OpenVINO, torch eager and compiled."""
