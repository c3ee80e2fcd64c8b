"""IDX files (Fashion-MNIST, MNIST): finding them, parsing them, memory-mapping large ones.

The format is a tiny header (magic, rank, big-endian dims) followed by raw uint8 bytes, so an
uncompressed file can be memory-mapped and read row by row; gzip files are read whole. Files are
looked for in --data-dir, $COMPRESS_DATA_DIR, then the Debian `dataset-fashion-mnist` package.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from pathlib import Path

import numpy as np

from compress.models.errors import DataNotFoundError, InvalidInputError, UsageError

log = logging.getLogger(__name__)

DATA_ENV = "COMPRESS_DATA_DIR"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
INSTALL_HINT = (
    "install it with `sudo apt-get install -y dataset-fashion-mnist`, or pass "
    f"--data-dir DIR (or set {DATA_ENV}) pointing at the four IDX files"
)


def _open_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from e


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array; validates the header."""
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise InvalidInputError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise InvalidInputError(f"{path} is truncated: header says {dims}, found {body.size} bytes")
    return body.reshape(dims).copy()  # writable, detached from the decompressed buffer


def _is_gzip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from e


def map_idx(path: Path) -> np.memmap:
    """Memory-map an uncompressed IDX file (rows read when used; page cache shared by ranks)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08":
                raise InvalidInputError(f"{path} is not an unsigned-byte IDX file")
            dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3]))
        offset, size = 4 + 4 * len(dims), path.stat().st_size
    except (OSError, struct.error) as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from e
    if size - offset != int(np.prod(dims)):
        raise InvalidInputError(
            f"{path} is truncated: header says {dims}, found {size - offset} bytes"
        )
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def idx_dir_candidates(dataset: str, data_dir: str | None) -> list[Path]:
    """Where we look, in order: --data-dir, $COMPRESS_DATA_DIR, the Debian package (Fashion)."""
    out = [Path(p) for p in (data_dir, os.environ.get(DATA_ENV)) if p]
    out += [p / dataset for p in list(out)]
    if dataset == "fashion-mnist":
        out.append(DEBIAN_FASHION)
    return out


def load_idx_split(
    dataset: str, data_dir: str | None, split: str, mmap: bool | None = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of an IDX split ('train' or 'test'). `mmap`:
    None maps uncompressed files (gzip is read whole), True insists on it, False reads all."""
    img_stem, lbl_stem = IDX_FILES[split]
    tried = idx_dir_candidates(dataset, data_dir)
    for d in tried:
        img, lbl = _find_idx(d, img_stem), _find_idx(d, lbl_stem)
        if img and lbl:
            mapped = mmap is not False and not _is_gzip(img)
            if mmap and not mapped:
                raise UsageError(
                    f"cannot memory-map {img}: it is gzip-compressed",
                    hint=f"decompress it once (`gunzip -k {img}`) or drop the mmap option",
                )
            x = map_idx(img) if mapped else read_idx(img)
            y = read_idx(lbl).astype(np.int64)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise InvalidInputError(f"{d}: images {x.shape} and labels {y.shape} don't match")
            log.debug("loaded %s/%s from %s: %s", dataset, split, d, x.shape)
            return x, y
    where = ", ".join(str(p) for p in tried) or "(nowhere: no --data-dir given)"
    hint = "pass --data-dir DIR holding train-images-idx3-ubyte.gz etc."
    hint = INSTALL_HINT if dataset == "fashion-mnist" else hint
    raise DataNotFoundError(f"{dataset} {split} split not found; looked in: {where}", hint=hint)


def idx_source(dataset: str, data_dir: str | None) -> str:
    """The directory the training images are read from ('?' when there is none)."""
    found = [
        d for d in idx_dir_candidates(dataset, data_dir) if _find_idx(d, IDX_FILES["train"][0])
    ]
    return str(found[0]) if found else "?"
