"""The machine: what its CPU and GPU can do (read, never assumed), and the process-wide settings applied
once where a run starts: torch threads, warnings, and the cycle collector kept off long-lived objects."""

from __future__ import annotations

import gc
import platform
import warnings

import torch
from omegaconf import DictConfig


def configure_host(cfg: DictConfig) -> None:
    """Apply the run's `num_threads`, silence warnings that do not apply, and freeze what the imports made."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    quiet_expected_warnings()
    freeze_long_lived_objects(once=True)


def freeze_long_lived_objects(once: bool) -> None:
    """Move every object alive now out of the cycle collector's way, so that its full collections (several
    in a run) and the one at exit no longer walk the hundreds of thousands of objects that importing torch,
    Lightning and matplotlib made. Measured: a default 5-epoch MLP run took a median 5.9% longer without it
    (docs/performance.md). `once`: only if nothing was frozen yet, so that the later jobs of an in-process
    sweep do not freeze what earlier jobs left (their cyclic garbage would then never be collected)."""
    if not once or gc.get_freeze_count() == 0:
        gc.freeze()


def quiet_expected_warnings() -> None:
    # Batches come from resident tensors, so worker processes would only add overhead.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`srun` command is available.*")
    # In DDP the epoch values logged without sync_dist are torchmetrics results (reduced over the ranks
    # already) and each process's own pass times.
    warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed setting.*")


def cpuinfo_field(name: str) -> str:
    """The first `name : value` line's value in Linux's /proc/cpuinfo; empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as info:
            line = next((line for line in info if line.startswith(name)), "")
    except OSError:
        return ""
    return line.partition(":")[2].strip()


def cpu_flags() -> set[str]:
    return set(cpuinfo_field("flags").split())


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes in bfloat16 itself (AVX512-BF16 or AMX); without it PyTorch emulates bf16,
    about 10x slower than float32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def gpu_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolved_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16 mixed precision where the hardware computes bf16 itself (a GPU that supports it, a CPU
    with AVX512-BF16 or AMX), float32 elsewhere, where emulated bf16 is ~10x slower. Other values as given."""
    if str(precision) != "auto":
        return str(precision)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    native = gpu_has_bf16() if on_gpu else accelerator in ("cpu", "auto") and cpu_has_native_bf16()
    return "bf16-mixed" if native else "32-true"
