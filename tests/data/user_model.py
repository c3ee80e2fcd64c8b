"""A user model for tests: depthwise convolutions, a concatenation and residual adds.

Loaded as `tests/data/user_model.py:build`, the way users bring their own architectures.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 project, plus the identity (MobileNetV2 style)."""

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = conv_bn(channels, hidden, 1)
        self.depthwise = conv_bn(hidden, hidden, 3, groups=hidden)
        self.project = nn.Sequential(
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.depthwise(self.expand(x)))


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, 16)
        self.branch_a = conv_bn(16, 16)
        self.branch_b = conv_bn(16, 8, 1)
        self.block1 = InvertedResidual(24)
        self.down_dw = conv_bn(24, 24, 3, stride=2, groups=24)
        self.down_pw = conv_bn(24, 32, 1)
        self.block2 = InvertedResidual(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        x = self.block1(x)
        x = self.down_pw(self.down_dw(x))
        x = self.block2(x)
        return self.fc(self.flatten(self.pool(x)))


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return TinyNet(num_classes, in_channels)
