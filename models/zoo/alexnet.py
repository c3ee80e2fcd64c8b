"""AlexNet (Krizhevsky et al., 2012) with torchvision's module names and shapes, in two variants
sharing every module name: ``imagenet`` (input_size >= 64): torchvision's exactly; ``small``
(< 64): a 3x3 stride-1 stem, max-pools padded by 1 (inputs down to 8x8: 28 -> 14 -> 7 -> 4),
AdaptiveAvgPool2d((2, 2)) and a ``hidden``-wide (default 1024) classifier, because the ImageNet
stem would shrink a 28x28 image to nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.models.zoo.factories import check_options, pick_variant, register_model
from compress.models.zoo.spec import ModelSpec, make_spec

MIN_IMAGENET_SIZE = 63  # smallest input the 11x11/4 stem and three 3x3/2 pools accept


def _features(in_channels: int, small: bool) -> nn.Sequential:
    """Five convs, three max-pools; indices 0, 3, 6, 8, 10 are the convs, as in torchvision."""
    stem = (
        nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
        if small
        else nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
    )
    pad = 1 if small else 0

    def pool() -> nn.MaxPool2d:
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=pad)

    return nn.Sequential(
        stem,
        nn.ReLU(inplace=True),
        pool(),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        pool(),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        pool(),
    )


def _classifier(in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear: the Linears are .1, .4 and .6."""
    return nn.Sequential(
        nn.Dropout(p=dropout),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(p=dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


class AlexNet(nn.Module):
    """features -> avgpool -> flatten -> classifier, with torchvision's default (PyTorch) init."""

    spec: ModelSpec  # set by the factory

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        small: bool = False,
        hidden: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        pooled = 2 if small else 6
        hidden = hidden if hidden is not None else (1024 if small else 4096)
        self.features = _features(in_channels, small)
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = _classifier(256 * pooled * pooled, hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("alexnet", input_size=224)
def alexnet(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    variant: str = "auto",
    hidden: int | None = None,
    dropout: float = 0.5,
    **kw: Any,
) -> nn.Module:
    """AlexNet; torchvision-identical at ImageNet sizes, the small variant below 64 pixels."""
    check_options("alexnet", kw, hidden)
    chosen = pick_variant("alexnet", variant, input_size, MIN_IMAGENET_SIZE)
    model = AlexNet(
        num_classes, in_channels, small=chosen == "small", hidden=hidden, dropout=dropout
    )
    model.spec = make_spec(
        "alexnet", num_classes, in_channels, input_size, classifier="classifier.6", variant=chosen
    )
    return model
