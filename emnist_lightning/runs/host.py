"""Process-wide settings, applied once where a run starts: torch threads, the allocator, warnings."""

from __future__ import annotations

import ctypes
import platform
import warnings

import torch
from omegaconf import DictConfig

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def configure_host(cfg: DictConfig) -> None:
    """Apply the run's `num_threads` and `reuse_freed_memory`, and silence warnings that do not apply."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    if cfg.get("reuse_freed_memory"):
        keep_freed_memory()
    quiet_expected_warnings()


def quiet_expected_warnings() -> None:
    # Batches come from resident tensors, so worker processes would only add overhead.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`srun` command is available.*")
    # In DDP the epoch values logged without sync_dist are torchmetrics results (reduced over the ranks
    # already) and each process's own pass times.
    warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed setting.*")


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc serves large blocks with mmap and trims its heap, so each training step maps
    its activation buffers afresh and the kernel zero-fills every page on first touch. Keeping the
    memory removes those page faults (docs/performance.md has the figures); the process keeps its
    peak memory until it exits. Returns False where the C library is not glibc (macOS, musl), which
    this leaves alone.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    never_trim = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1))
    never_mmap = libc.mallopt(_M_MMAP_MAX, 0)
    return bool(never_trim and never_mmap)
