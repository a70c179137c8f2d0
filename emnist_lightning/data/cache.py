"""Decoded splits kept on disk, so that later runs skip decompressing and validating the IDX files.

An entry is named by the split, a checksum of the code that decodes the files (`decoder_version`: edit
the decoder and old entries are never read) and the BLAKE2 checksum of the files it was decoded from, so
a changed file is decoded (and validated) afresh. Entries are .npz files, whose arrays carry zip CRC-32s
checked on every read; a read entry must still look like what the decoder makes (`check`), and carry the
seal this user's processes put on what they wrote: a keyed BLAKE2 digest of its name and arrays, under a
secret key kept outside the cache (`data.cache_key_file`, readable by its owner only). So an entry that was
damaged, cut short or planted in a shared cache folder, even one with the right shapes and labels in
range, is rebuilt, with a warning, never used: whoever can write the folder cannot seal an entry without
the key. A cache folder (or key) that cannot be read or written is a warning, not an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
import zipfile
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

import numpy as np

from emnist_lightning.atomic import replaced_atomically

log = logging.getLogger(__name__)

Arrays = tuple[np.ndarray, np.ndarray]
ORPHAN_AGE_S = 24 * 3600  # a partial file older than this was left by a process that died while writing


def files_checksum(paths: Sequence[Path]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def decoder_version(modules: Sequence[Path]) -> str:
    """A short checksum of the decoding code's source files."""
    return files_checksum(modules)[:12]


def cached_arrays(
    cache_dir: Path,
    key_file: Path,
    name: str,
    sources: Sequence[Path],
    decode: Callable[[], Arrays],
    version: str,
    check: Callable[[np.ndarray, np.ndarray], str | None],
) -> Arrays:
    """`decode()`'s (images, labels), from the cache entry of these `sources` and decoder `version` when
    there is a sound one: `check(images, labels)` returns why an entry is not, or None."""
    key = sealing_key(key_file)
    if key is None:
        return decode()
    entry = cache_dir / f"{name}-{version}-{files_checksum(sources)}.npz"
    arrays = read_entry(entry, check, key)
    if arrays is None:
        arrays = decode()
        write_entry(entry, *arrays, key)
    return arrays


def sealing_key(path: Path) -> bytes | None:
    """The secret this user's processes seal cache entries with, made on first use (owner-only); None, with
    a warning, when it can be neither read nor made (then nothing is cached)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("cannot read the data cache's key %s (%s); decoding without the cache", path, err)
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32))
    except FileExistsError:
        pass  # another process made it first
    except OSError as err:
        log.warning("cannot make the data cache's key %s (%s); set data.cache_key_file", path, err)
        return None
    return path.read_bytes()


def seal(key: bytes, entry: Path, images: np.ndarray, labels: np.ndarray) -> bytes:
    digest = hashlib.blake2b(key=key[:64], digest_size=32)
    for part in (entry.name.encode(), np.ascontiguousarray(images).data, np.ascontiguousarray(labels).data):
        digest.update(part)
    return digest.digest()


def read_entry(entry: Path, check: Callable[[np.ndarray, np.ndarray], str | None], key: bytes) -> Arrays | None:
    """The entry's arrays, or None (with a warning, unless it is simply absent) when it cannot be read
    whole, does not pass `check` or does not carry this key's seal: the zip format checks each array's
    CRC-32 as it is read."""
    try:
        with np.load(entry, allow_pickle=False) as stored:
            images, labels = stored["images"], stored["labels"]
            sealed = stored["seal"].tobytes() if "seal" in stored.files else b""
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("the data cache %s is unreadable (%s); decoding the IDX files again", entry, err)
        return None
    problem = check(images, labels)
    if problem is None and not hmac.compare_digest(sealed, seal(key, entry, images, labels)):
        problem = "its seal does not match: another user or program wrote it"
    if problem is not None:
        log.warning(
            "the data cache %s is not what the decoder makes (%s); decoding the IDX files again", entry, problem
        )
        return None
    return images, labels


def write_entry(entry: Path, images: np.ndarray, labels: np.ndarray, key: bytes) -> None:
    """Write atomically (a temporary file of a name no other writer uses, renamed into place); a cache
    that cannot be written is skipped with a warning. Partial files that dead writers left are removed."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(entry.parent)
        with replaced_atomically(entry) as file:
            sealed = np.frombuffer(seal(key, entry, images, labels), dtype=np.uint8)
            np.savez(file, images=images, labels=labels, seal=sealed)
    except OSError as err:
        log.warning(
            "cannot write the data cache in %s (%s); set data.cache_dir to a writable folder", entry.parent, err
        )


def remove_orphans(folder: Path) -> None:
    cutoff = time.time() - ORPHAN_AGE_S
    for orphan in folder.glob(".*.partial"):
        with suppress(OSError):
            if orphan.stat().st_mtime < cutoff:
                orphan.unlink()
