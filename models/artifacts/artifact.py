"""Self-describing artifacts: a directory with `model.safetensors` (or `model.onnx`) + `card.json`.

The card says what the model is (architecture, spec, pruned shapes), how it was made (`history`)
and how good it is (`metrics`). Writes are atomic (disk.durable.atomic_dir). Reading checks each
listed file's size and the weights' SHA-256 (94 MB in ~70 ms; once per file and process).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from compress.models.artifacts.structure import apply_structure, capture_structure
from compress.models.disk.durable import atomic_dir as atomic_dir
from compress.models.disk.durable import check_out_dir as check_out_dir
from compress.models.disk.durable import check_writable as check_writable
from compress.models.disk.durable import disk_errors
from compress.models.errors import ArtifactError
from compress.models.jsontypes import JsonObject
from compress.models.weights.download import sha256_of
from compress.models.weights.reading import check_finite, load_into
from compress.models.zoo.registry import ModelSpec, attach_spec, create_model, is_factory_ref
from compress.models.zoo.usercode import check_consent, known_source, read_source, sha256_bytes

log = logging.getLogger(__name__)

CARD = "card.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
CODE = "model.py"
FORMAT = "compress-artifact/1"


class Architecture(BaseModel):
    """How to rebuild the module: a zoo name (or `file.py:factory`) and its arguments."""

    name: str
    num_classes: int
    in_channels: int
    input_size: int
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Code(BaseModel):
    """A user factory's source, stored in the artifact as `file` (relative), with its hash."""

    file: str = CODE
    factory: str
    sha256: str
    origin: str = ""  # where the code was first read from (information only, never run)


class Card(BaseModel):
    """card.json. Every section is declared here (unknown keys are dropped on reading, and
    setting an undeclared one is an error), so what a stage writes is typed."""

    model_config = ConfigDict(extra="ignore")

    format: str = FORMAT
    kind: Literal["pytorch", "onnx"] = "pytorch"
    architecture: Architecture
    code: Code | None = None
    spec: dict[str, Any]
    structure: dict[str, dict[str, Any]] | None = None
    class_names: list[str] = Field(default_factory=list)
    precision: str = "fp32"
    trained: bool = False
    metrics: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    software: dict[str, str] = Field(default_factory=dict)
    files: dict[str, dict[str, Any]] = Field(default_factory=dict)
    content_hash: str = ""
    gates: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    training_precision: str | None = None  # what training ran in (autocast), train/distill
    distributed: dict[str, Any] | None = None  # world size, backend, rank consistency
    prune: dict[str, Any] | None = None  # before/after, speed-ups (prune stage)
    quantization: dict[str, Any] | None = None  # method, settings, why (quantize stage)
    factorization: dict[str, Any] | None = None  # ranks per Linear layer (factorize stage)

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.spec)

    def add_history(self, stage: str, **fields: Any) -> None:
        """Append one lineage entry (stage name, time, tool version, whatever the stage adds)."""
        self.history.append({"stage": stage, "at": now(), "tool": tool_version(), **fields})


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def tool_version() -> str:
    try:
        return f"compress {metadata.version('compress')}"
    except metadata.PackageNotFoundError:
        return "compress (source)"


def software_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers, read without importing them."""
    out = {"python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxruntime", "torch-pruning", "compress"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def write_card(directory: Path, card: Card) -> None:
    """Record file hashes/sizes and the content hash, then write card.json."""
    card.files = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != CARD
    }
    card.content_hash = hashlib.sha256(
        "".join(f["sha256"] for f in card.files.values()).encode()
    ).hexdigest()
    card.software = software_versions()
    (directory / CARD).write_text(card.model_dump_json(indent=2) + "\n")


def new_card(model: nn.Module, **fields: Any) -> Card:
    """A card describing `model` (its spec, rebuild arguments and current layer shapes)."""
    spec: ModelSpec = model.spec  # type: ignore[assignment]
    arch = Architecture(
        name=spec.extra.get("factory", spec.name),
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        input_size=spec.input_size,
        kwargs=spec.extra.get("kwargs", {}),
    )
    code = None
    if "factory_sha256" in spec.extra:
        origin, _, attr = str(spec.extra["factory"]).rpartition(":")
        code = Code(
            factory=attr, sha256=spec.extra["factory_sha256"], origin=str(Path(origin).resolve())
        )
    return Card(architecture=arch, code=code, spec=spec.to_dict(), **fields)


def save_model(model: nn.Module, out: str | Path, card: Card, *, overwrite: bool = False) -> Path:
    """Write a PyTorch artifact atomically: tensors in safetensors, description in the card."""
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    check_finite(sd, "the model being saved")
    card.kind = "pytorch"
    card.structure = capture_structure(model)
    needed = sum(t.numel() * t.element_size() for t in sd.values())
    with atomic_dir(out, overwrite) as tmp, disk_errors(out, needed):
        save_file(sd, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        if card.code is not None:
            (tmp / CODE).write_bytes(code_source(card.code))
            card.code.file = CODE
        write_card(tmp, card)
    log.info("saved %s", out)
    return Path(out)


def is_artifact(path: str | Path) -> bool:
    return (Path(path) / CARD).is_file()


DAMAGED_HINT = (
    "the artifact is damaged: rerun the stage that made it (or restore a good copy); "
    "a previous run's artifact is never touched by a failed one"
)
HASHED = (WEIGHTS, ONNX)  # files whose SHA-256 is checked on every read (model.py has its own)
_hashes: dict[tuple[str, int, int], str] = {}


def read_card(path: str | Path) -> Card:
    """Parse `path/card.json`; check the listed files' sizes and the weights' SHA-256."""
    path = Path(path)
    if not is_artifact(path):
        raise ArtifactError(f"{path} is not an artifact directory (no {CARD})")
    try:
        card = Card.model_validate_json((path / CARD).read_text())
    except (ValidationError, ValueError) as e:
        raise ArtifactError(
            f"{path / CARD} is not a valid card: {str(e).splitlines()[0]}", hint=DAMAGED_HINT
        ) from e
    for name, info in card.files.items():
        f = path / name
        if not f.is_file() or f.stat().st_size != info.get("bytes"):
            raise ArtifactError(
                f"{path}: {name} is missing or its size differs from the card "
                "(incomplete copy or tampered artifact)",
                hint=DAMAGED_HINT,
            )
        if name in HASHED and info.get("sha256") and cached_sha256(f) != info["sha256"]:
            raise ArtifactError(
                f"{f} does not match the SHA-256 in its card (damaged: bit flip, partial "
                "copy or edit)",
                hint=DAMAGED_HINT,
            )
    return card


def cached_sha256(path: Path) -> str:
    """sha256_of, computed once per file version (path, size, mtime) in this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = sha256_of(path)
    return _hashes[key]


def code_source(code: Code) -> bytes:
    """The exact source a model was built from (this process ran it, or its origin is unchanged)."""
    source = known_source(code.sha256)
    if source is None and code.origin and Path(code.origin).is_file():
        source = read_source(code.origin)
    if source is None or sha256_bytes(source) != code.sha256:
        raise ArtifactError(
            f"the source of the model's factory (sha256 {code.sha256}, from "
            f"{code.origin or 'an artifact'}) is not available unchanged; cannot save its code"
        )
    return source


def model_code(path: str | Path, card: Card, *, trust_code: bool) -> tuple[Path, bytes] | None:
    """The factory file a PyTorch card needs and its bytes, after the consent check; None for
    zoo models. Runs nothing: callers may use it to refuse early (e.g. a recipe's plan)."""
    path = Path(path)
    if card.code is not None:
        name = card.code.file
        if not name or Path(name).name != name or name in (".", ".."):
            raise ArtifactError(f"{path / CARD}: code file {name!r} must be a plain file name")
        file, recorded = path / name, card.code.sha256
        if not file.is_file():
            raise ArtifactError(f"{path}: {name} (the model's code) is missing")
    elif is_factory_ref(card.architecture.name):  # older cards: the factory's own path, no hash
        file, recorded = Path(card.architecture.name.rpartition(":")[0]), None
    else:
        return None
    source = read_source(file)
    check_consent(str(path), file, sha256_bytes(source), recorded, trust_code)
    return file, source


def build_model(card: Card, path: str | Path, *, trust_code: bool = False) -> nn.Module:
    """The architecture the card describes, pruned shapes applied, weights uninitialized (a user
    factory runs only with consent; an older card without a hash gains a `code` record)."""
    a = card.architecture
    if "source" in a.kwargs:
        raise ArtifactError(f"{path}: architecture kwargs may not set 'source'")
    shape = {"num_classes": a.num_classes, "in_channels": a.in_channels, "input_size": a.input_size}
    code = model_code(path, card, trust_code=trust_code)
    if code is None:
        model = create_model(a.name, **shape, **a.kwargs)
    else:
        file, source = code
        if card.code is None:
            attr = a.name.rpartition(":")[2]
            card.code = Code(factory=attr, sha256=sha256_bytes(source), origin=str(file.resolve()))
        model = create_model(f"{file}:{card.code.factory}", **shape, source=source, **a.kwargs)
    if card.structure:
        apply_structure(model, card.structure)
    return model


def load_model(path: str | Path, *, trust_code: bool = False) -> tuple[nn.Module, Card]:
    """Rebuild a PyTorch artifact's model and load its tensors strictly; never unpickles."""
    from compress.models.weights.reading import read_state_dict

    path = Path(path)
    card = read_card(path)
    if card.kind != "pytorch":
        raise ArtifactError(f"{path} is an {card.kind} artifact, not a PyTorch one")
    model = build_model(card, path, trust_code=trust_code)
    load_into(model, read_state_dict(path / WEIGHTS), str(path / WEIGHTS))
    attach_spec(model, ModelSpec.from_dict(card.spec))
    model.eval()
    return model, card


def card_json(card: Card) -> JsonObject:
    """The card as card.json holds it."""
    return json.loads(card.model_dump_json())
