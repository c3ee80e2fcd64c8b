"""`LowRankLinear`: a Linear layer stored as two thinner ones (a truncated SVD), y = B (A x) + b.

An m x n weight becomes A (r x n) and B (m x r): r (m + n) numbers instead of m n, which pays
only when r < mn / (m + n). It lives in models/ because an artifact must rebuild it from its card
(compress.models.artifacts.structure records the rank) before loading the tensors strictly, without pickle.
"""

from __future__ import annotations

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """Drop-in replacement for nn.Linear(in_features, out_features) of rank `rank`."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def break_even(out_features: int, in_features: int) -> float:
    """The rank at which a factorization stores as many weights as the dense layer."""
    return out_features * in_features / (out_features + in_features)
