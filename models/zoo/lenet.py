"""LeNet-5 (LeCun et al., 1998), ReLU / max-pool form: the zoo's smallest, the Fashion-MNIST
baseline. Every op is a module, so torch-pruning's graph and ONNX export see the whole network."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.models.errors import UsageError
from compress.models.zoo.factories import check_options, register_model
from compress.models.zoo.spec import ModelSpec, make_spec

MIN_INPUT_SIZE = 12  # conv2 (5x5, no padding) then a 2x2 pool need a 6x6 map after pool1


def feature_size(input_size: int) -> int:
    """Side of conv2's pooled output: 28 -> 14 -> 10 -> 5."""
    return (input_size // 2 - 4) // 2


class LeNet5(nn.Module):
    """conv(5x5, pad 2) -> pool -> conv(5x5) -> pool -> fc 120 -> fc 84 -> fc classes."""

    spec: ModelSpec  # set by the factory

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        s = feature_size(input_size)
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * s * s, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():  # registered in the order they apply
            x = layer(x)
        return x


@register_model("lenet5", min_input_size=MIN_INPUT_SIZE)
def lenet5(
    *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, **kw: Any
) -> nn.Module:
    """LeNet-5; 61,706 parameters at 1x28x28 with 10 classes (fc1 is 400 -> 120)."""
    check_options("lenet5", kw)
    if input_size < MIN_INPUT_SIZE:
        raise UsageError(f"lenet5 needs --input-size >= {MIN_INPUT_SIZE}, got {input_size}")
    model = LeNet5(num_classes, in_channels, input_size)
    model.spec = make_spec(
        "lenet5", num_classes, in_channels, input_size, classifier="fc3", variant="default"
    )
    return model
