"""VGG-16 (config D), with and without BatchNorm, torchvision's names, indices and init.
``imagenet`` (input_size >= 64): torchvision's exactly. ``small``: the last two max-pools become
``nn.Identity`` (same keys; 28 -> 14 -> 7 -> 3), a 1x1 pool and a 512-hidden classifier: five
pools erase a 28x28 image, and a 25088-wide head would dwarf the convs."""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.models.zoo.alexnet import Pooled, head
from compress.models.zoo.factories import check_options, family, pick_variant

# fmt: off
CFG_D: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                          512, 512, 512, "M", 512, 512, 512, "M"]
# fmt: on
MIN_IMAGENET_SIZE = 32  # five 2x2 pools need at least 32 pixels to leave a 1x1 map


def make_features(in_channels: int, batch_norm: bool, small: bool) -> nn.Sequential:
    """torchvision's `make_layers(cfg D)`; in the small variant the last two pools are Identity."""
    layers: list[nn.Module] = []
    pools = 0
    for v in CFG_D:
        if v == "M":
            pools += 1  # the small variant keeps 3 of the 5 pools
            layers.append(nn.Identity() if small and pools > 3 else nn.MaxPool2d(2, stride=2))
            continue
        out = int(v)
        layers.append(nn.Conv2d(in_channels, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out
    return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """torchvision's VGG init: Kaiming fan-out convs, N(0, 0.01) linears, zero biases, BN 1/0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


class VGG(Pooled):
    """With torchvision's VGG init; the classifier's Linears at .0, .3, .6."""

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        pooled: int = 7,
        hidden: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        classifier = head(512 * pooled * pooled, hidden, num_classes, dropout, first=False)
        super().__init__(features, pooled, classifier)
        init_weights(self)


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
    """VGG-16, with BatchNorm after every conv for `vgg16_bn`."""
    check_options(name, kw, hidden)
    chosen = pick_variant(name, variant, input_size, MIN_IMAGENET_SIZE)
    small = chosen == "small"
    features = make_features(in_channels, name.endswith("_bn"), small)
    width = hidden if hidden is not None else (512 if small else 4096)
    return VGG(features, num_classes, 1 if small else 7, width, dropout), chosen


vgg16 = family(
    "vgg16", "classifier.6", "VGG-16 without BatchNorm (138M parameters at ImageNet size).", _build
)
vgg16_bn = family(
    "vgg16_bn", "classifier.6", "VGG-16 with BatchNorm (torchvision's `vgg16_bn` indices).", _build
)
