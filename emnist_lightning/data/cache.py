"""Decoded splits kept on disk, so that later runs skip decompressing and validating the IDX files.

An entry is named by the BLAKE2 checksum of the files it was decoded from, so a changed file is decoded
(and validated) afresh. Entries are .npz files, whose arrays carry zip CRC-32s checked on every read: an
entry that was damaged or cut short is rebuilt, with a warning, never used. Only arrays that passed
validation are cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENTRY_FORMAT = 1  # part of every entry's name: a new layout never reads an old one


def files_checksum(paths: Sequence[Path]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_arrays(
    cache_dir: Path, name: str, sources: Sequence[Path], decode: Callable[[], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """`decode()`'s (images, labels), from the cache entry of these `sources` when there is a sound one."""
    entry = cache_dir / f"{name}-v{ENTRY_FORMAT}-{files_checksum(sources)}.npz"
    arrays = read_entry(entry) if entry.is_file() else None
    if arrays is None:
        arrays = decode()
        write_entry(entry, *arrays)
    return arrays


def read_entry(entry: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The entry's arrays, or None (with a warning) when it cannot be read whole: the zip format checks
    each array's CRC-32 as it is read, so a damaged or cut-short entry is never returned."""
    try:
        with np.load(entry) as stored:
            return stored["images"], stored["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("the data cache %s is unreadable (%s); decoding the IDX files again", entry, err)
        return None


def write_entry(entry: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write atomically (a temporary file renamed into place); a cache that cannot be written is skipped."""
    partial = entry.with_name(f".{entry.name}.{os.getpid()}.partial")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as file:
            np.savez(file, images=images, labels=labels)
        os.replace(partial, entry)
    except OSError as err:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        log.warning(
            "cannot write the data cache in %s (%s); set data.cache_dir to a writable folder", entry.parent, err
        )
