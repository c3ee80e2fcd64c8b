"""Write tests/data/torchvision_manifest.json from a real torchvision install.

The manifest lists, for each zoo model that mirrors a torchvision model, every state_dict key
of torchvision's model (in order) and its shape, at ImageNet size (1000 classes, 3x224x224).
``tests/test_zoo.py`` compares our models against it, so the check is not circular: the
expected names come from torchvision itself, not from our code.

Needs torchvision, which is NOT a project dependency: run it from a throwaway venv, e.g.

    python3 -m venv /tmp/tvvenv && /tmp/tvvenv/bin/pip install torch torchvision
    /tmp/tvvenv/bin/python tools/make_torchvision_manifest.py            # writes the manifest
    /tmp/tvvenv/bin/python tools/make_torchvision_manifest.py --parity   # also logits check

``--parity`` additionally builds each torchvision model with a fixed seed, loads its
state_dict into our model with strict=True and compares eval-mode logits on a random input
(our models need only torch, so they import from this checkout). No weights are downloaded
(``weights=None``) and none are written. The test suite never runs this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tests" / "data" / "torchvision_manifest.json"
MODELS = ("alexnet", "vgg16", "vgg16_bn", "resnet18", "resnet50")


def torchvision_model(name: str) -> torch.nn.Module:
    """torchvision's model `name`, randomly initialized (no download)."""
    import torchvision

    return getattr(torchvision.models, name)(weights=None, num_classes=1000)


def manifest() -> dict[str, object]:
    """{"_meta": versions, model: {key: shape}} for every model in MODELS."""
    import torchvision

    out: dict[str, object] = {
        "_meta": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "num_classes": 1000,
            "in_channels": 3,
            "input_size": 224,
        }
    }
    for name in MODELS:
        sd = torchvision_model(name).state_dict()
        out[name] = {k: list(v.shape) for k, v in sd.items()}
    return out


def dumps(man: dict[str, object]) -> str:
    """JSON with one `"key": [shape]` per line, so diffs of the manifest stay readable."""
    blocks = []
    for model, entries in man.items():
        assert isinstance(entries, dict)
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in entries.items())
        blocks.append(f" {json.dumps(model)}: {{\n{body}\n }}")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def parity(name: str, seed: int = 0) -> float:
    """Max |logit difference| between torchvision's model and ours with the same weights."""
    sys.path.insert(0, str(ROOT))
    from compress.models.zoo.registry import create_model

    torch.manual_seed(seed)
    ref = torchvision_model(name).eval()
    ours = create_model(name, num_classes=1000, in_channels=3, input_size=224).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        return (ref(x) - ours(x)).abs().max().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=MANIFEST)
    ap.add_argument("--parity", action="store_true", help="also compare logits with torchvision")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    man = manifest()
    text = dumps(man)
    assert json.loads(text) == man
    args.out.write_text(text)
    print(f"wrote {args.out}")
    if args.parity:
        for name in MODELS:
            print(f"{name}: max |logits diff| = {parity(name):.3g}")


if __name__ == "__main__":
    main()
