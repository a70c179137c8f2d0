"""What every run shares: config location, building its parts, metrics.json, and failing clearly."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from emnist_lightning.errors import find_user_error

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def config_dir() -> str:
    """conf/ inside an installed wheel, else the repository's top-level conf/."""
    packaged = Path(__file__).parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).parents[1] / "conf")


def compose(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config outside a Hydra run (tests, benchmarks), with `output_dir` as the run dir."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose(
            config_name, overrides=[f"paths.output_dir={output_dir}", *overrides], return_hydra_config=True
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


def quiet_expected_warnings() -> None:
    # Batches come from resident tensors, so worker processes would only add overhead.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`srun` command is available.*")


def output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def build_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    """Instantiate every non-null entry of a `callbacks` group (null switches one off)."""
    return [instantiate(node) for node in (cfg or {}).values() if node is not None]


def build_loggers(cfg: DictConfig | None) -> list[Logger]:
    return [instantiate(node) for node in (cfg or {}).values() if node is not None]


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback]) -> L.Trainer:
    configure_host(cfg)
    # The callbacks group alone decides the progress bar: without one Lightning would add its tqdm bar.
    no_bar = {} if any(isinstance(callback, ProgressBar) for callback in callbacks) else {"enable_progress_bar": False}
    return instantiate(cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg.get("logger")), **no_bar)


def configure_host(cfg: DictConfig) -> None:
    """Process-wide CPU settings of a run: torch threads and the memory allocator."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    if cfg.get("reuse_freed_memory"):
        keep_freed_memory()


# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc serves large blocks with mmap and trims its heap, so each training step maps
    its activation buffers afresh and the kernel zero-fills every page on first touch: 11k to 29k
    page faults per default-CNN step on the 2-core CPU machine. Without them a 15-epoch default CNN
    run fits in 147 s instead of 212 s, with the same peak RSS (README, Performance). The process
    keeps its peak memory until it exits. Returns False where the C library is not glibc (macOS,
    musl), which this leaves alone.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    never_trim = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1))
    never_mmap = libc.mallopt(_M_MMAP_MAX, 0)
    return bool(never_trim and never_mmap)


def choices() -> dict[str, str]:
    """The option picked in each config group, e.g. {'model': 'mlp', 'optimizer': 'adam'}."""
    picked = HydraConfig.get().runtime.choices
    return {
        group: str(option) for group, option in picked.items() if option is not None and not group.startswith("hydra")
    }


def overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task)


def hparams_for_logger(cfg: DictConfig) -> dict[str, Any]:
    """Flat scalars for TensorBoard's HParams dashboard: group choices plus the tunable values."""
    params: dict[str, Any] = {f"choice/{group}": option for group, option in choices().items()}
    for section in ("model", "optimizer", "scheduler", "regularization", "data"):
        node = cfg.get(section)
        if node is None:
            continue
        flat = flatten(OmegaConf.to_container(node, resolve=True), prefix=section)
        params.update({k: v for k, v in flat.items() if not k.endswith("_target_") and not k.endswith("_partial_")})
    params["seed"] = cfg.get("seed")
    params["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    return params


def flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}"))
        return flat
    if isinstance(node, (list, tuple)):
        return {prefix: str(list(node))}
    return {prefix: node}


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Write hyperparameters with their final metrics, for TensorBoard's HParams dashboard."""
    hp_metrics = {f"hparams/{k}": v for k, v in metrics.items() if isinstance(v, float)}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams_for_logger(cfg), metrics=hp_metrics)
        else:
            logger.log_hyperparams(hparams_for_logger(cfg))


def write_metrics(directory: Path, record: dict[str, Any]) -> Path:
    """Write metrics.json atomically, so a report never reads half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / METRICS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux VmHWM), or None where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def run_record(status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, "choices": choices(), "overrides": overrides(), "peak_rss_mb": peak_rss_mb(), **fields}


def is_multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_task(task: Callable[[DictConfig], float | None], cfg: DictConfig) -> float | None:
    """Run one job. A user error ends a single run with one line and exit status 1; in a
    multirun any failure is recorded in the job's metrics.json and the sweep goes on."""
    quiet_expected_warnings()
    try:
        return task(cfg)
    except Exception as err:
        user_error = find_user_error(err) or (err if isinstance(err, FloatingPointError) else None)
        message = str(user_error) if user_error is not None else f"{type(err).__name__}: {err}"
        write_metrics(output_dir(), run_record("failed", error=message, traceback=traceback.format_exc()))
        if is_multirun():
            log.error("job failed: %s", message)
            return None
        if user_error is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
