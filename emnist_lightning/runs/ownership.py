"""One writer per run folder: the process that runs (or resumes) a run holds a lock file in its folder for
the life of the run; a second one is refused before it writes anything."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from emnist_lightning.errors import ConfigError

LOCK_FILE = ".run.lock"


def is_main_process() -> bool:
    """False in the other processes of a DDP run, which Lightning (or SLURM) starts with a rank."""
    return all(int(os.environ.get(name) or 0) == 0 for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


@contextmanager
def run_folder_lock(folder: Path) -> Iterator[None]:
    """Held while a run (or a resume of it) writes into `folder`; a second writer is refused."""
    if not is_main_process():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise in_use(str(folder), folder) from None
    try:
        yield
    finally:
        lock.release()


def check_not_in_use(folder: Path, what: str) -> None:
    """Refuse `folder` (or a job folder in it) while a process holds its lock; `what` names it in the line."""
    locks = [path for path in (folder / LOCK_FILE, *folder.glob(f"*/{LOCK_FILE}")) if path.is_file()]
    for path in locks:
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
            lock.release()
        except Timeout:
            raise in_use(what, path.parent) from None


def in_use(what: str, folder: Path) -> ConfigError:
    return ConfigError(
        f"{what}: '{folder}' is in use by another process (a run, or a resume of it); wait for it to end, or "
        "choose another folder"
    )
