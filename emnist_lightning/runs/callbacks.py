"""Callbacks that keep a run's bookkeeping for its record: validation history and pass times."""

from __future__ import annotations

import time

import lightning as L


class MetricHistory(L.Callback):
    """Validation metrics per epoch, kept for metrics.json and sweep reports."""

    def __init__(self, keys: tuple[str, ...] = ("val/acc", "val/macro_acc", "val/loss")) -> None:
        self.keys = keys
        self.history: dict[str, list[float]] = {key: [] for key in keys}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        for key in self.keys:
            value = trainer.callback_metrics.get(key)
            self.history[key].append(float(value) if value is not None else float("nan"))


class EpochTimer(L.Callback):
    """Wall time of every training epoch and validation pass, logged and kept for metrics.json."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {"train_epoch": [], "val_epoch": [], "test": []}
        self._started: dict[str, float] = {}

    def _start(self, phase: str) -> None:
        self._started[phase] = time.perf_counter()

    def _stop(self, phase: str, pl_module: L.LightningModule) -> None:
        elapsed = time.perf_counter() - self._started.pop(phase)
        self.seconds[phase].append(elapsed)
        if pl_module.trainer.state.fn == "fit" and phase != "test":
            pl_module.log(f"time/{phase}_s", elapsed, on_step=False, on_epoch=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("train_epoch")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop("train_epoch", pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._start("val_epoch")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "val_epoch" in self._started:
            self._stop("val_epoch", pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("test")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop("test", pl_module)
