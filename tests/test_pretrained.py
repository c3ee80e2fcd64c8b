"""Published weights by name: download once (loopback server, no internet), verify, refuse bad
transfers without leaving anything in the cache, transfer onto other heads, explain misfits."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from compress.models.errors import ArchitectureMismatchError, ResourceError, UsageError
from compress.models.weights.download import DownloadError
from compress.models.zoo.pretrained import PRETRAINED, lookup, transfer
from compress.models.zoo.registry import create_model, spec_of
from tests.loopback import Route, checkpoint_bytes, publish, serve


@pytest.fixture(scope="module")
def r18_ckpt(tmp_path_factory) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A generated ResNet-18 ImageNet-shaped checkpoint (no num_batches_tracked, like 2017's)."""
    torch.manual_seed(1)
    m = create_model("resnet18", num_classes=1000, in_channels=3, input_size=224)
    body = checkpoint_bytes(m, tmp_path_factory.mktemp("ck") / "r18.pth")
    return body, m.state_dict()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def _mirror(monkeypatch, server) -> None:
    monkeypatch.setenv("COMPRESS_WEIGHTS_URL", server.base + "/models")


def _cached(cache) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_registry_records_torchvision_facts():
    p = lookup("resnet50", "IMAGENET1K_V1")
    assert p.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert p.sha256_prefix == "0676ba61" and p.acc1 == 76.130 and p.num_params == 25_557_032
    assert (p.resize, p.crop) == (256, 224)
    assert {m for m, _ in PRETRAINED} == {"alexnet", "vgg16", "vgg16_bn", "resnet18", "resnet50"}
    # the parameter counts are those of our models at the ImageNet shape
    m = create_model("resnet18", num_classes=1000, in_channels=3, input_size=224)
    assert sum(t.numel() for t in m.parameters()) == lookup("resnet18", "imagenet").num_params


def test_download_once_then_reuse_the_cache(r18_ckpt, cache, monkeypatch):
    body, sd = r18_ckpt
    entry = publish(monkeypatch, "resnet18", body)
    with serve({f"/models/{entry.filename}": Route(body)}) as server:
        _mirror(monkeypatch, server)
        m = create_model("resnet18", weights="imagenet")
        m2 = create_model("resnet18", weights="imagenet")
    assert len(server.hits) == 1  # the second model came from the cache
    assert _cached(cache) == [entry.filename]
    assert spec_of(m).num_classes == 1000 and spec_of(m).input_size == 224
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(m.state_dict()[k], v) and torch.equal(m2.state_dict()[k], v)


@pytest.mark.parametrize(
    ("route", "match"),
    [
        ("wrong-hash", "sha256 is"),
        ("truncated", "truncated|broke off"),
        ("html", "HTML page"),
        ("missing", "HTTP 404"),
    ],
)
def test_bad_transfers_are_refused_and_leave_nothing(r18_ckpt, cache, monkeypatch, route, match):
    body, _ = r18_ckpt
    entry = publish(monkeypatch, "resnet18", body)
    path = f"/models/{entry.filename}"
    routes = {
        "wrong-hash": {path: Route(body[:-8] + b"\0" * 8)},
        "truncated": {path: Route(body, truncate_at=len(body) // 3)},
        "html": {path: Route(b"<!DOCTYPE html><html>Sign in</html>", 200, "text/html")},
        "missing": {},
    }[route]
    with serve(routes) as server:
        _mirror(monkeypatch, server)
        with pytest.raises(DownloadError, match=match) as info:
            create_model("resnet18", weights="imagenet")
    assert info.value.exit_code == 3
    assert _cached(cache) == []  # no partial file, no wrong file
    if route == "missing":
        assert str(cache / entry.filename) in str(info.value) and "--weights" in str(info.value)


def test_offline_names_the_file_the_address_and_where_to_put_it(cache, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("COMPRESS_WEIGHTS_URL", f"http://127.0.0.1:{port}/models")
    with pytest.raises(DownloadError, match=r"resnet50-0676ba61\.pth") as info:
        create_model("resnet50", weights="imagenet")
    msg = str(info.value)
    assert "resnet50-0676ba61.pth" in msg and f"127.0.0.1:{port}" in msg
    assert f"put it at {cache / 'resnet50-0676ba61.pth'}" in msg
    assert _cached(cache) == []


def test_a_copy_put_in_the_cache_by_hand_is_used_without_network(r18_ckpt, cache, monkeypatch):
    body, _ = r18_ckpt
    entry = publish(monkeypatch, "resnet18", body)
    cache.mkdir(parents=True)
    (cache / entry.filename).write_bytes(body)
    monkeypatch.setenv("COMPRESS_WEIGHTS_URL", "http://127.0.0.1:9/nowhere")
    create_model("resnet18", weights="imagenet")  # would fail if it tried to download


def test_unwritable_cache_is_a_resource_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("COMPRESS_CACHE", str(blocker / "sub"))
    with pytest.raises(ResourceError, match="can't be written") as info:
        create_model("resnet18", weights="imagenet")
    assert info.value.exit_code == 6 and "COMPRESS_CACHE" in str(info.value)


def test_unknown_name_lists_what_exists():
    with pytest.raises(UsageError, match=r"available: imagenet \(IMAGENET1K_V1\)"):
        create_model("resnet50", weights="imagenet21k")
    with pytest.raises(UsageError, match="no published weights"):
        create_model("lenet5", weights="imagenet")


def test_transfer_replaces_the_classifier_and_keeps_the_rest(r18_ckpt):
    _, sd = r18_ckpt
    torch.manual_seed(0)
    m = create_model("resnet18", num_classes=10, in_channels=3, input_size=28)
    fc_before = m.fc.weight.detach().clone()
    record = transfer(m, dict(sd), lookup("resnet18", "imagenet"), "r18.pth")
    assert torch.equal(m.fc.weight, fc_before) and m.fc.out_features == 10
    assert torch.equal(m.conv1.weight, sd["conv1.weight"])
    assert record["classifier"] == {"name": "fc", "replaced": True, "classes": "1000 -> 10"}
    assert spec_of(m).mean == (0.485, 0.456, 0.406)
    json.dumps(record)  # goes into the card


def test_wrong_input_channels_names_the_first_conv(r18_ckpt):
    _, sd = r18_ckpt
    m = create_model("resnet18", num_classes=10, in_channels=1, input_size=28)
    with pytest.raises(ArchitectureMismatchError, match=r"layer conv1: .*3-channel input") as e:
        transfer(m, dict(sd), lookup("resnet18", "imagenet"), "r18.pth")
    assert "drop --in-channels" in str(e.value)


def test_small_variant_names_the_layer_and_why(r18_ckpt):
    _, sd = r18_ckpt
    m = create_model("resnet18", num_classes=10, in_channels=3, input_size=28, stem="cifar")
    with pytest.raises(ArchitectureMismatchError, match=r"layer conv1: .*'small' variant"):
        transfer(m, dict(sd), lookup("resnet18", "imagenet"), "r18.pth")


def test_weights_name_on_an_artifact_or_factory_is_refused(trained_lenet):
    from compress.models.artifacts.resolve import resolve_model

    with pytest.raises(UsageError, match="apply to zoo models"):
        resolve_model(str(trained_lenet), weights="imagenet")


def test_cli_train_transfer_records_where_weights_came_from(r18_ckpt, cache, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from compress.cli.app import app
    from tests.conftest import FASHION_MINI

    body, _ = r18_ckpt
    entry = publish(monkeypatch, "resnet18", body)
    out = tmp_path / "r18"
    with serve({f"/models/{entry.filename}": Route(body)}) as server:
        _mirror(monkeypatch, server)
        r = CliRunner().invoke(
            app,
            ["train", "--model", "resnet18", "--weights", "imagenet", "--num-classes", "10",
             "--data-dir", str(FASHION_MINI), "--epochs", "1", "--limit", "64",
             "--batch-size", "32", "--amp", "off", "--out", str(out)],
        )  # fmt: skip
    assert r.exit_code == 0, r.output
    card = json.loads((out / "card.json").read_text())
    created = card["history"][0]
    assert created["weights"] == "imagenet"
    assert created["pretrained"]["url"].endswith(entry.filename)
    assert created["pretrained"]["classifier"]["replaced"] is True
    assert card["spec"]["in_channels"] == 3 and card["spec"]["mean"] == [0.485, 0.456, 0.406]
    shown = CliRunner().invoke(app, ["info", str(out)])
    assert "weights: imagenet (IMAGENET1K_V1)" in shown.output and "1000 -> 10" in shown.output


def test_cli_bad_weights_name_exits_2_without_output(tmp_path):
    from typer.testing import CliRunner

    from compress.cli.app import app
    from tests.conftest import FASHION_MINI

    out = tmp_path / "x"
    r = CliRunner().invoke(
        app,
        ["train", "--model", "resnet18", "--weights", "imagenet1k", "--data-dir",
         str(FASHION_MINI), "--epochs", "1", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 2 and "available: imagenet" in r.output
    assert not out.exists()


def test_image_folders_get_the_weights_preprocessing_and_batches(tmp_path):
    """Resize-256/center-crop-224 (not a squash) for ImageNet weights; list indices batch."""
    from dataclasses import replace

    import numpy as np
    from PIL import Image

    from compress.models.data.imagefolder import ImageFiles

    img = np.zeros((224, 300, 3), np.uint8)
    img[:, :40] = 255  # a white band at the left edge: the center crop cuts it away
    Image.fromarray(img).save(tmp_path / "a.png")
    spec = spec_of(create_model("resnet18", num_classes=2, in_channels=3, input_size=224))
    squash = ImageFiles([(tmp_path / "a.png", 1)], spec)
    crop = ImageFiles(
        [(tmp_path / "a.png", 1)] * 2,
        replace(spec, extra={"preprocess": {"resize": 256, "crop": 224}}),
    )
    x_squash, _ = squash[0]
    x_crop, y = crop[[0, 1]]
    assert x_crop.shape == (2, 3, 224, 224) and y.tolist() == [1, 1]
    assert x_squash[0, :, 0].mean() > 1.0 and x_crop[0, 0, :, 0].mean() < -1.0


def test_weights_path_to_a_hand_fetched_copy_is_verified_and_transferred(
    r18_ckpt, tmp_path, monkeypatch
):
    from compress.models.artifacts.resolve import ShapeArgs, resolve_model

    body, sd = r18_ckpt
    entry = publish(monkeypatch, "resnet18", body)
    good = tmp_path / "good" / entry.filename
    good.parent.mkdir()
    good.write_bytes(body)
    src = resolve_model("resnet18", weights=str(good), shape=ShapeArgs(10, 3, 28))
    assert src.trained and src.pretrained and src.pretrained["classifier"]["replaced"]
    assert torch.equal(src.model.state_dict()["conv1.weight"], sd["conv1.weight"])
    bad = tmp_path / "bad" / entry.filename
    bad.parent.mkdir()
    bad.write_bytes(body[:-8] + b"\0" * 8)
    with pytest.raises(DownloadError, match="not that file"):
        resolve_model("resnet18", weights=str(bad), shape=ShapeArgs(10, 3, 28))


def test_a_misfit_is_refused_before_any_download(cache, monkeypatch):
    monkeypatch.setenv("COMPRESS_WEIGHTS_URL", "http://127.0.0.1:9/nowhere")
    with pytest.raises(ArchitectureMismatchError, match=r"layer classifier\.0: .*'small' variant"):
        create_model("vgg16", num_classes=10, in_channels=3, input_size=28, weights="imagenet")
    with pytest.raises(ArchitectureMismatchError, match=r"layer features\.0: .*3-channel input"):
        create_model("alexnet", num_classes=10, in_channels=1, input_size=224, weights="imagenet")
    assert _cached(cache) == []


def test_download_inside_a_process_group_waits_for_local_rank_0(
    r18_ckpt, cache, monkeypatch, tmp_path
):
    import torch.distributed as dist

    body, _ = r18_ckpt
    entry = publish(monkeypatch, "resnet18", body)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        with serve({f"/models/{entry.filename}": Route(body)}) as server:
            _mirror(monkeypatch, server)
            create_model("resnet18", weights="imagenet")
    finally:
        dist.destroy_process_group()
    assert len(server.hits) == 1 and _cached(cache) == [entry.filename]
