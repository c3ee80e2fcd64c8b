"""PyTorch -> ONNX: conversion, the checked file, parity gates, input size."""
