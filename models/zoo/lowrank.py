"""`LowRankLinear`: a Linear stored as a truncated SVD, y = B (A x) + b: r (m + n) numbers instead
of m n (pays when r < mn / (m + n)). In models/ because an artifact rebuilds it from its card's rank
before a strict, pickle-free load."""

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
