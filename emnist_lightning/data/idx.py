"""Reading and validating IDX files, the format EMNIST (like MNIST) ships in.

An IDX file is a big-endian header -- two zero bytes, a type code, the number of dimensions,
then one uint32 per dimension -- followed by the data. EMNIST uses unsigned bytes (code 0x08).
"""

from __future__ import annotations

import gzip
import zlib
from math import prod
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emnist_lightning.errors import DataError

IMAGES_MAGIC = 2051  # uint8, 3 dimensions
LABELS_MAGIC = 2049  # uint8, 1 dimension
IMAGE_SIDE = 28
# byclass's training images, the largest official file, are 547 MB; nothing larger is EMNIST's
MAX_IDX_BYTES = 1 << 30


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when the name ends in .gz. Decompression stops one byte past the size
    the IDX header declares, and a declared size over MAX_IDX_BYTES is refused before any: a gzip bomb
    costs nothing."""
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as handle:
            header = read_header(handle)
            declared = declared_size(header, path)
            if declared is None:
                return header
            return header + handle.read(declared - len(header) + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: not a valid gzip file ({err}); the file is corrupt or its download was cut "
            "short: delete it and download it again"
        ) from err
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror}); check the path and permissions") from err


def read_header(handle: BinaryIO) -> bytes:
    """The IDX header: 4 bytes, then one uint32 per dimension (fewer bytes if the file is shorter)."""
    start = handle.read(4)
    return start + handle.read(4 * start[3]) if len(start) == 4 else start


def declared_size(header: bytes, path: Path) -> int | None:
    """The file's size as its header declares it (None for a header cut short), refusing sizes over
    MAX_IDX_BYTES."""
    if len(header) < 4 or len(header) < 4 + 4 * header[3]:
        return None
    dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(header[3])]
    size = len(header) + prod(dims)
    if size > MAX_IDX_BYTES:
        raise DataError(
            f"{path}: its header declares {size:,} bytes (shape {tuple(dims)}), more than the {MAX_IDX_BYTES:,} "
            "an EMNIST file can hold; this is not an EMNIST file"
        )
    return size


def incompleteness(path: Path) -> str | None:
    """Why the file is cut short, judged from its header and its size alone (no decompression: gzip keeps
    the uncompressed size, modulo 2**32, in its last four bytes), or None when it looks whole."""
    try:
        with open(path, "rb") as raw:
            compressed = path.suffix == ".gz"
            header = read_header(gzip.GzipFile(fileobj=raw) if compressed else raw)
            declared = declared_size(header, path)
            if declared is None:
                return "its IDX header is cut short"
            if not compressed:
                actual = path.stat().st_size
                return None if actual == declared else f"it holds {actual:,} bytes, its header declares {declared:,}"
            raw.seek(-4, 2)
            stored = int.from_bytes(raw.read(4), "little")
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        return f"unreadable ({err})"
    if stored != declared % 2**32:
        return f"its gzip trailer records {stored:,} bytes, its header declares {declared:,}: it was cut short"
    return None


def parse_idx(raw: bytes, path: Path, expected_magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX payload, checking magic number and size against the header."""
    if len(raw) < 4:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{path}: wrong magic number {magic} (expected {expected_magic}); this is not an EMNIST "
            f"{'image' if expected_magic == IMAGES_MAGIC else 'label'} file"
        )
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated: the IDX header is cut short")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = prod(dims)
    payload_size = len(raw) - header_size
    if payload_size < expected_size:
        raise DataError(
            f"{path}: truncated: the header promises {expected_size:,} bytes of data "
            f"(shape {dims}) but the file holds {payload_size:,}; download it again"
        )
    if payload_size > expected_size:
        raise DataError(
            f"{path}: {payload_size - expected_size:,} unexpected bytes after the data of shape "
            f"{dims}; the file is corrupt: download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def read_images(path: Path) -> np.ndarray:
    """(N, 28, 28) uint8 images exactly as stored (EMNIST stores them transposed)."""
    images = parse_idx(read_bytes(path), path, IMAGES_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{path}: images have shape {images.shape[1:]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}; "
            "this is not an EMNIST image file"
        )
    return images


def read_labels(path: Path) -> np.ndarray:
    """(N,) uint8 labels."""
    labels = parse_idx(read_bytes(path), path, LABELS_MAGIC)
    if labels.ndim != 1:
        raise DataError(f"{path}: labels have shape {labels.shape}, expected one dimension")
    return labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 `array` as IDX (gzipped when the name ends in .gz); used to make test data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())
