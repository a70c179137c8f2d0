"""Files written whole or not at all: a temporary file beside the target, renamed over it once written (a
rename within a folder is atomic), removed if writing fails. Every file the package writes whole (data
files, the cache, checkpoints, metrics.json, predictions, pictures, tables, exports' model.json) is written
this way, so a kill or a full disk never leaves half a file under a real name."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO


def partial_beside(path: Path) -> Path:
    """A temporary name beside `path` that no other writer uses, on this machine or another sharing the folder."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.partial")


@contextmanager
def replaced_atomically(path: Path, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write; once the block ends without error it replaces `path`. `durable`: on disk
    (fsync) before the rename, for files a crash must not take back (checkpoints, run records)."""
    partial = partial_beside(path)
    try:
        with open(partial, "wb") as file:
            yield file
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(partial, path)
        if durable:  # the rename itself is on disk only once its folder is
            sync_folder(path.parent)
    finally:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, content: str | bytes) -> Path:
    """`content` (text as UTF-8) as the whole of `path`, written by `replaced_atomically`."""
    with replaced_atomically(path) as file:
        file.write(content.encode() if isinstance(content, str) else content)
    return path
