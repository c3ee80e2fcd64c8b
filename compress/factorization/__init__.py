"""Factorization: truncated SVD of Linear layers into low-rank pairs (compress.models.zoo.lowrank)."""
