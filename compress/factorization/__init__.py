"""Factorization: truncated SVD of Linear layers into low-rank pairs (models.lowrank)."""
