"""The reference model zoo: shapes, specs, variants, and torchvision parity of names/shapes.

tests/data/torchvision_manifest.json was written by tools/make_torchvision_manifest.py from a
real torchvision install (see its "_meta"), so the ImageNet-size checks compare against
torchvision itself, not against our own code. Big models are built on the meta device
(shapes only, no memory, no init cost) except where a test needs real numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from compress.models.errors import UsageError
from compress.models.zoo.registry import (
    FASHION_MEAN,
    FASHION_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    create_model,
    list_models,
)

MANIFEST = json.loads((Path(__file__).parent / "data" / "torchvision_manifest.json").read_text())
TV_MODELS = sorted(k for k in MANIFEST if not k.startswith("_"))
ZOO = list_models()
CLASSIFIER = {
    "lenet5": "fc3",
    "alexnet": "classifier.6",
    "vgg16": "classifier.6",
    "vgg16_bn": "classifier.6",
    "resnet18": "fc",
    "resnet50": "fc",
}
VARIANT_AT_28 = {
    "lenet5": "default",
    "alexnet": "small",
    "vgg16": "small",
    "vgg16_bn": "small",
    "resnet18": "imagenet",
    "resnet50": "imagenet",
}


def imagenet_meta(name: str, **kw: object) -> nn.Module:
    """`name` at 3x224x224 with 1000 classes, built on the meta device (shapes only)."""
    with torch.device("meta"):
        return create_model(name, num_classes=1000, in_channels=3, input_size=224, **kw)


def shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_zoo_lists_every_family() -> None:
    assert sorted(CLASSIFIER) == ZOO


@pytest.mark.parametrize("name", ZOO)
def test_forward_backward_28x28(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_size=28).train()
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([1, 7])).backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ZOO)
def test_spec_fields(name: str) -> None:
    model = create_model(name, input_size=28)
    spec = model.spec
    assert (spec.name, spec.num_classes, spec.in_channels, spec.input_size) == (name, 10, 1, 28)
    assert spec.input_shape == (1, 28, 28)
    assert (spec.mean, spec.std) == (FASHION_MEAN, FASHION_STD)
    assert spec.classifier == CLASSIFIER[name]
    assert spec.variant == VARIANT_AT_28[name]
    head = model.get_submodule(spec.classifier)
    assert isinstance(head, nn.Linear) and head.out_features == 10
    last_linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    assert last_linear == spec.classifier


@pytest.mark.parametrize("name", ZOO)
def test_rgb_input_and_other_class_count(name: str) -> None:
    model = create_model(name, num_classes=7, in_channels=3, input_size=32).eval()
    assert first_conv(model).in_channels == 3
    assert (model.spec.mean, model.spec.std) == (IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


@pytest.mark.parametrize("name", [n for n in ZOO if n != "lenet5"])
def test_smallest_input_size_runs(name: str) -> None:
    model = create_model(name, input_size=8).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_manifest_covers_the_torchvision_models() -> None:
    assert TV_MODELS == ["alexnet", "resnet18", "resnet50", "vgg16", "vgg16_bn"]
    assert MANIFEST["_meta"]["num_classes"] == 1000
    assert MANIFEST["resnet50"]["fc.weight"] == [1000, 2048]


@pytest.mark.parametrize("name", TV_MODELS)
def test_imagenet_state_dict_matches_torchvision(name: str) -> None:
    model = imagenet_meta(name)
    assert list(shapes(model).items()) == list(MANIFEST[name].items())  # names, shapes, order
    assert model.spec.variant == "imagenet"


def test_resnet18_imagenet_forward() -> None:
    model = create_model("resnet18", num_classes=1000, in_channels=3, input_size=224).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg16_bn", "resnet50"])
def test_imagenet_forward_heavy(name: str) -> None:
    model = create_model(name, num_classes=1000, in_channels=3, input_size=224).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg16_bn"])
@pytest.mark.parametrize(
    ("size", "variant"), [(28, "small"), (63, "small"), (64, "imagenet"), (224, "imagenet")]
)
def test_variant_auto(name: str, size: int, variant: str) -> None:
    with torch.device("meta"):
        assert create_model(name, input_size=size).spec.variant == variant


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg16_bn"])
def test_variant_override_small_at_224(name: str) -> None:
    model = imagenet_meta(name, variant="small")
    assert model.spec.variant == "small"
    tv = MANIFEST[name]
    ours = shapes(model)
    assert list(ours) == list(tv)  # same names, only head and stem shapes differ
    feats = {
        k: v for k, v in ours.items() if k.startswith("features.") and k != "features.0.weight"
    }
    assert feats == {k: tv[k] for k in feats}


def test_alexnet_small_layout() -> None:
    model = create_model("alexnet", input_size=28)
    stem = model.features[0]
    assert (stem.kernel_size, stem.stride, stem.padding) == ((3, 3), (1, 1), (1, 1))
    assert model.avgpool.output_size == (2, 2)
    assert model.classifier[1].in_features == 256 * 2 * 2
    assert model.classifier[1].out_features == 1024 and model.classifier[6].in_features == 1024
    assert create_model("alexnet", input_size=28, hidden=64).classifier[4].weight.shape == (64, 64)


def test_vgg_small_layout() -> None:
    for name, pools, identities in [
        ("vgg16", (4, 9, 16), (23, 30)),
        ("vgg16_bn", (6, 13, 23), (33, 43)),
    ]:
        model = create_model(name, input_size=28)
        assert all(isinstance(model.features[i], nn.MaxPool2d) for i in pools)
        assert all(isinstance(model.features[i], nn.Identity) for i in identities)
        assert model.avgpool.output_size == (1, 1)
        assert [model.classifier[i].weight.shape for i in (0, 3, 6)] == [
            (512, 512),
            (512, 512),
            (10, 512),
        ]


def test_variant_override_imagenet_at_small_size() -> None:
    model = create_model("vgg16", input_size=32, variant="imagenet", hidden=64).eval()
    assert model.spec.variant == "imagenet" and model.classifier[0].in_features == 25088
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    alex = create_model("alexnet", input_size=64, variant="imagenet", hidden=64).eval()
    with torch.no_grad():
        assert alex(torch.randn(1, 1, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        # 28 px is too small for the 11x11/4 stem; five 2x pools need 32 px
        ("alexnet", {"input_size": 28, "variant": "imagenet"}, "needs --input-size >= 63"),
        ("vgg16", {"input_size": 28, "variant": "imagenet"}, "needs --input-size >= 32"),
        ("vgg16", {"variant": "tiny"}, "variant must be one of"),
        ("alexnet", {"hidden": 0}, "hidden must be >= 1"),
        ("resnet50", {"stem": "mnist"}, "stem must be one of"),
        ("lenet5", {"bogus": 1}, "unknown option"),
        ("resnet18", {"bogus": 1}, "unknown option"),
        # the checks the families share name the model they refuse
        ("alexnet", {"variant": "tiny"}, "alexnet: variant must be one of auto, imagenet, small"),
        ("vgg16_bn", {"hidden": 0}, "vgg16_bn: hidden must be >= 1"),
        ("vgg16", {"bogus": 1, "extra": 2}, r"vgg16: unknown option\(s\): bogus, extra"),
        ("alexnet", {"bogus": 1}, "alexnet: unknown option"),
    ],
)
def test_bad_options_are_usage_errors(name: str, kw: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        create_model(name, **kw)


def test_resnet50_cifar_stem() -> None:
    model = create_model("resnet50", input_size=28, stem="cifar").eval()
    conv1 = model.conv1
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    assert model.spec.variant == "small"
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    plain = shapes(create_model("resnet50", input_size=28))
    cifar = shapes(model)
    assert list(plain) == list(cifar)
    assert {k for k in plain if plain[k] != cifar[k]} == {"conv1.weight"}


def test_resnet50_structure() -> None:
    model = imagenet_meta("resnet50")
    block = model.layer2[0]
    assert (block.conv1.stride, block.conv2.stride) == ((1, 1), (2, 2))  # v1.5: stride on 3x3
    assert block.downsample[0].stride == (2, 2)
    assert create_model("resnet50", in_channels=3).conv1.weight.shape == (64, 3, 7, 7)


def test_resnet_init_like_torchvision() -> None:
    model = create_model("resnet18")
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    assert model.layer1[0].bn2.weight.abs().sum() > 0
    zeroed = create_model("resnet50", zero_init_residual=True)
    assert all(
        torch.all(b.bn3.weight == 0)
        for layer in (zeroed.layer1, zeroed.layer2, zeroed.layer3, zeroed.layer4)
        for b in layer
    )


def test_vgg_init_like_torchvision() -> None:
    torch.manual_seed(0)
    model = create_model("vgg16_bn", input_size=28)
    linear = model.classifier[0]
    assert torch.all(linear.bias == 0) and abs(linear.weight.std().item() - 0.01) < 1e-3
    conv = model.features[0]
    assert torch.all(conv.bias == 0)
    assert torch.all(model.features[1].weight == 1)


def test_lenet5_shapes_and_parameter_count() -> None:
    model = create_model("lenet5")
    assert model.fc1.weight.shape == (120, 400)
    assert [model.fc2.weight.shape, model.fc3.weight.shape] == [(84, 120), (10, 84)]
    # conv1 156 + conv2 2,416 + fc1 48,120 + fc2 10,164 + fc3 850
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert create_model("lenet5", input_size=32).fc1.in_features == 16 * 6 * 6
    kinds = {type(m) for m in model.modules()}
    assert {nn.ReLU, nn.MaxPool2d, nn.Flatten} <= kinds
    with pytest.raises(UsageError, match="lenet5 needs --input-size >= 12, got 10"):
        create_model("lenet5", input_size=10)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet50"])
def test_python_default_is_the_native_imagenet_size(name: str) -> None:
    """A torchvision user's arguments give torchvision's model (rough edge 7)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, in_channels=3)
    assert model.spec.input_size == 224 and model.spec.variant != "small"
    if name == "alexnet":
        assert model.classifier[1].in_features == 256 * 6 * 6  # not the 1024-wide small head
        assert model.classifier[6].in_features == 4096


def test_lenet_and_user_factories_default_to_28() -> None:
    assert create_model("lenet5").spec.input_size == 28


def test_a_user_factory_without_a_spec_gets_the_zoo_defaults(tmp_path) -> None:
    """Its spec is what a zoo model of that shape gets (default normalization, the last
    Linear/Conv as classifier), variant "user", with the factory and its hash recorded."""
    from compress.models.zoo.spec import default_mean_std

    f = tmp_path / "net.py"
    f.write_text(
        "from torch import nn\n"
        "def build(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))\n"
    )
    spec = create_model(f"{f}:build", num_classes=3, in_channels=3).spec
    assert (spec.variant, spec.classifier, spec.num_classes, spec.in_channels) == (
        "user",
        "1",
        3,
        3,
    )
    assert (tuple(spec.mean), tuple(spec.std)) == default_mean_std(3)
    assert spec.extra["factory"] == f"{f}:build" and len(spec.extra["factory_sha256"]) == 64
