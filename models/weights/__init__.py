"""Weights: safe reading, verified downloads, published ImageNet weights."""
