"""A user model for tests: plain convolutions 16, 32 and 48 channels wide (with BatchNorm), the
widths where channel rounding to multiples of 8 used to remove far more than asked.

Loaded as `tests/data/widths_model.py:build`.
"""

from __future__ import annotations

from torch import nn


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(in_channels, 16),
        nn.MaxPool2d(2),
        *block(16, 32),
        nn.MaxPool2d(2),
        *block(32, 48),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(48, num_classes),
    )
