"""AlexNet (Krizhevsky et al., 2012), torchvision's names and shapes. ``imagenet`` (input_size
>= 64): torchvision's exactly; ``small``: 3x3 stride-1 stem, pools padded by 1 (28 -> 14 -> 7
-> 4), AdaptiveAvgPool2d((2, 2)) and a ``hidden``-wide (1024) classifier, as ImageNet's stem
would erase a 28x28 input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.models.zoo.factories import check_options, family, pick_variant

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


def head(width: int, hidden: int, num_classes: int, dropout: float, first: bool) -> nn.Sequential:
    """Two Linear+ReLU with a Dropout before each (`first`, AlexNet: Linears at .1, .4, .6) or
    after each (VGG: .0, .3, .6), then the output Linear."""
    layers: list[nn.Module] = []
    for n in (width, hidden):
        pair = [nn.Linear(n, hidden), nn.ReLU(inplace=True)]
        layers += [nn.Dropout(p=dropout), *pair] if first else [*pair, nn.Dropout(p=dropout)]
    return nn.Sequential(*layers, nn.Linear(hidden, num_classes))


class Pooled(nn.Module):
    """features -> avgpool -> flatten -> classifier: the AlexNet and VGG layout."""

    def __init__(self, features: nn.Sequential, pooled: int, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class AlexNet(Pooled):
    """With torchvision's default (PyTorch) init."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        small: bool = False,
        hidden: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        pooled = 2 if small else 6
        hidden = hidden if hidden is not None else (1024 if small else 4096)
        classifier = head(256 * pooled * pooled, hidden, num_classes, dropout, first=True)
        super().__init__(_features(in_channels, small), pooled, classifier)


def _build(
    name: str,
    num_classes: int,
    in_channels: int,
    input_size: int,
    variant: str = "auto",
    hidden: int | None = None,
    dropout: float = 0.5,
    **kw: Any,
) -> tuple[nn.Module, str]:
    check_options(name, kw, hidden)
    chosen = pick_variant(name, variant, input_size, MIN_IMAGENET_SIZE)
    return AlexNet(num_classes, in_channels, chosen == "small", hidden, dropout), chosen


alexnet = family(
    "alexnet",
    "classifier.6",
    "AlexNet; torchvision-identical at ImageNet sizes, the small variant below 64 pixels.",
    _build,
)
