"""ResNet-18/50 (He et al., 2015), torchvision's v1.5 layout, names, shapes and init (its
state_dicts load unchanged). ``stem="cifar"``: 3x3 stride-1 conv1, no max-pool, for small images."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.models.errors import UsageError
from compress.models.zoo.factories import check_options, family

STEMS = ("imagenet", "cifar")


def conv(in_planes: int, out_planes: int, k: int, stride: int = 1) -> nn.Conv2d:
    """k x k conv, padding k // 2, no bias (a BatchNorm follows)."""
    return nn.Conv2d(
        in_planes, out_planes, kernel_size=k, stride=stride, padding=k // 2, bias=False
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the shortcut (ResNet-18/34)."""

    expansion = 1
    kernels: tuple[int, ...] = (3, 3)  # convN/bnN; the first 3x3 conv carries the stride

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        widths = [inplanes, *[planes] * (len(self.kernels) - 1), planes * self.expansion]
        for i, k in enumerate(self.kernels):
            s = stride if i == self.kernels.index(3) else 1
            setattr(self, f"conv{i + 1}", conv(widths[i], widths[i + 1], k, s))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(widths[i + 1]))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        for i in range(1, len(self.kernels) + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            out = self.relu(out) if i < len(self.kernels) else out
        out += identity
        return self.relu(out)


class Bottleneck(BasicBlock):
    """1x1 reduce, 3x3 (carrying the stride: v1.5), 1x1 expand x4, plus the shortcut."""

    expansion = 4
    kernels = (1, 3, 1)


Block = type[BasicBlock]


class ResNet(nn.Module):
    """Stem, four stages of residual blocks, global average pool, fc."""

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = conv(in_channels, 64, 3, 1) if stem == "cifar" else conv(in_channels, 64, 7, 2)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.Identity() if stem == "cifar" else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        """One stage; the first block projects the shortcut when shape or stride changes."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv(self.inplanes, planes * block.expansion, 1, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's init: Kaiming fan-out convs, BN weight 1 / bias 0, default fc."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:  # each block starts as the identity
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(getattr(m, f"bn{len(m.kernels)}").weight, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _build(
    name: str,
    num_classes: int,
    in_channels: int,
    input_size: int,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    **kw: Any,
) -> tuple[nn.Module, str]:
    check_options(name, kw)
    if stem not in STEMS:
        raise UsageError(f"{name}: stem must be one of {', '.join(STEMS)}, got {stem!r}")
    block, layers = LAYOUTS[name]
    model = ResNet(block, layers, num_classes, in_channels, stem, zero_init_residual)
    return model, "small" if stem == "cifar" else "imagenet"


LAYOUTS: dict[str, tuple[Block, list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}
resnet18 = family("resnet18", "fc", "ResNet-18: 11.7M parameters at 224.", _build)
resnet50 = family("resnet50", "fc", "ResNet-50: 25.6M parameters at 224.", _build)
