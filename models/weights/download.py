"""Downloading published checkpoints once into a cache, verified before use. The cache is `$COMPRESS_CACHE/weights/` (else `$XDG_CACHE_HOME` or `~/.cache`, `/compress/weights`).
A download streams into a temporary sibling, hashed on the way, and is renamed into place only
once verified (complete, not HTML, published SHA-256 prefix). `COMPRESS_WEIGHTS_URL` replaces the
address's directory (mirrors, loopback tests). Progress goes to compress.models.progress.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

from compress.models.disk.durable import atomic_file
from compress.models.errors import ResourceError, WeightsError
from compress.models.progress import progress_bar

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 30.0


class DownloadError(WeightsError):
    """A checkpoint that could not be fetched, or whose bytes are not the published file."""


def cache_dir() -> Path:
    """Where downloaded weights live (not created here)."""
    root = os.environ.get("COMPRESS_CACHE")
    if root:
        return Path(root).expanduser() / "weights"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "compress" / "weights"


def source_url(url: str) -> str:
    """`url`, or the same file name under `$COMPRESS_WEIGHTS_URL` when that is set."""
    mirror = os.environ.get("COMPRESS_WEIGHTS_URL")
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}" if mirror else url


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def cached_file(url: str, sha256_prefix: str) -> Path:
    """The verified local copy of `url`, downloading it first if the cache lacks it."""
    name = url.rsplit("/", 1)[-1]
    target = cache_dir() / name
    if target.is_file():
        digest = sha256_of(target)
        if digest.startswith(sha256_prefix):
            log.debug("using cached %s", target)
            return target
        log.warning(
            "cached %s has sha256 %s…, not %s…: downloading again",
            target,
            digest[:8],
            sha256_prefix,
        )
    _make_cache(target.parent)
    download(source_url(url), target, sha256_prefix)
    return target


def _make_cache(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as e:
        raise ResourceError(
            f"cache directory {folder} can't be written: {e.strerror or e}",
            hint="set COMPRESS_CACHE to a writable directory, or pass --weights PATH",
        ) from e


def download(url: str, target: Path, sha256_prefix: str) -> None:
    """Fetch `url` into `target` atomically; refuse (and keep nothing) unless verified."""
    try:
        with atomic_file(target) as tmp, tmp.open("wb") as out:
            digest = _transfer(url, out, target.name)
            if not digest.startswith(sha256_prefix):
                raise DownloadError(
                    f"{url} sent a file whose sha256 is {digest[:16]}…, not the published "
                    f"{sha256_prefix}…: refused, nothing kept in the cache",
                    hint="a corrupted transfer or a changed file; retry, or check the mirror",
                )
    except PermissionError as e:
        raise ResourceError(f"cannot write {target}: {e}") from e
    log.info("downloaded %s (sha256 %s…)", target, digest[:8])


def _transfer(url: str, out: BinaryIO, name: str) -> str:
    """Stream the response body into `out`; the SHA-256 of what was received."""
    h = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length") or ""
            total = int(length) if length.isdigit() else None
            kind = resp.headers.get("Content-Type", "")
            bar = progress_bar(f"downloading {name}", total)
            try:
                while block := resp.read(CHUNK):
                    if done == 0:
                        _refuse_html(url, kind, block)
                    h.update(block)
                    out.write(block)
                    done += len(block)
                    bar.update(done)
            finally:
                bar.close()
    except urllib.error.HTTPError as e:
        raise _unreachable(url, name, f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise _unreachable(url, name, str(e.reason)) from e
    except (HTTPException, TimeoutError, ConnectionError) as e:
        raise DownloadError(
            f"transfer of {url} broke off after {done:,} bytes ({type(e).__name__}): "
            "nothing kept in the cache",
            hint="retry; or download the file by hand and pass --weights PATH",
        ) from e
    if total is not None and done != total:
        raise DownloadError(
            f"transfer of {url} ended after {done:,} of {total:,} bytes (truncated): "
            "nothing kept in the cache",
            hint="retry; or download the file by hand and pass --weights PATH",
        )
    if done == 0:
        raise DownloadError(f"{url} sent an empty body: nothing kept in the cache")
    return h.hexdigest()


def _refuse_html(url: str, content_type: str, head: bytes) -> None:
    start = head[:512].lstrip().lower()
    if "text/html" in content_type.lower() or start.startswith((b"<!doctype html", b"<html")):
        raise DownloadError(
            f"{url} returned an HTML page, not the weights (an error, login or proxy page): "
            "nothing kept in the cache",
            hint="check the address or the proxy; or download the file by hand and pass "
            "--weights PATH",
        )


def _unreachable(url: str, name: str, why: str) -> DownloadError:
    where = cache_dir() / name
    return DownloadError(
        f"cannot download {name} from {url}: {why}",
        hint=f"offline or blocked? fetch {url} elsewhere and put it at {where} (verified "
        f"before use), or pass --weights /path/to/{name}",
    )
