"""Running a user's model code (`file.py:factory`): a factory the user types runs; one named by a
file (card, recipe) only with `--trust-code`, and never when its bytes differ from the recorded
SHA-256. The bytes hashed are the bytes executed."""

from __future__ import annotations

import hashlib
import logging
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compress.models.errors import InvalidInputError, UntrustedCodeError

log = logging.getLogger(__name__)
CONSENT = "pass --trust-code (recipe: `trust_code: true`; Python: trust_code=True)"

# Source of every factory executed in this process, by SHA-256: an artifact saved from such a
# model stores exactly the code that built it, even if the file changed since.
_SOURCES: dict[str, bytes] = {}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source(path: str | Path) -> bytes:
    """The bytes of a factory file (reading runs nothing)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"model file not found: {path}")
    return path.read_bytes()


def known_source(sha256: str) -> bytes | None:
    """Source with this hash that already ran in this process, if any."""
    return _SOURCES.get(sha256)


def load_factory(source: bytes, filename: str | Path, attr: str) -> Callable[..., Any]:
    """Execute `source` as a fresh module named after its hash; return its callable `attr`."""
    sha = sha256_bytes(source)
    mod_name = f"_compress_user_{sha[:16]}"
    module = types.ModuleType(mod_name)
    module.__file__ = str(filename)
    sys.modules[mod_name] = module
    try:
        exec(compile(source, str(filename), "exec"), module.__dict__)  # the bytes that were hashed
    except Exception as e:  # user code: report, don't crash
        raise InvalidInputError(f"importing {filename} failed: {type(e).__name__}: {e}") from e
    _SOURCES[sha] = source
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InvalidInputError(f"{filename} has no callable named {attr!r}")
    return factory  # type: ignore[no-any-return]


def check_consent(
    owner: str, file: str | Path, sha256: str, recorded: str | None, trust_code: bool
) -> None:
    """Refuse code named by `owner` (an artifact, a recipe) unless trusted and unchanged: a
    differing recorded hash is refused even with consent (trust was for the original code)."""
    if recorded is not None and sha256 != recorded:
        raise UntrustedCodeError(
            f"{owner}: {file} (sha256 {sha256}) is not the code the model was made with "
            f"(sha256 {recorded}); refused even with --trust-code. To use another factory, "
            f"pass it yourself: --model path/file.py:factory --weights {owner}"
        )
    if not trust_code:
        raise UntrustedCodeError(
            f"{owner} builds its model by running {file} (sha256 {sha256}); refused: "
            f"{CONSENT} if you trust that code"
        )
    log.info("running %s (sha256 %s), trusted for %s", file, sha256, owner)
