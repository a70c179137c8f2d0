"""Callbacks that keep a run's bookkeeping and make it resumable: validation history, pass times, the
test predictions and their intervals, random-number states, and a clean stop on Ctrl-C or SIGTERM. Their
state travels in checkpoints."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torchmetrics.utilities.distributed import gather_all_tensors

from emnist_lightning.analysis.predictions import HeldOutPredictions
from emnist_lightning.models.calibration import fit_temperature, nll
from emnist_lightning.runs.signals import StopRequests

log = logging.getLogger(__name__)


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

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict["history"]


class PredictionsKeeper(L.Callback):
    """Keeps every test image's true and predicted class (test_predictions.npz beside metrics.json, for
    paired comparisons between runs) and the 95% intervals of the test accuracies, for metrics.json.

    In a run of several processes each sees a shard of the test set, so there is no file of the whole
    set in the test files' order: the intervals come from the main process's shard and no file is written.
    """

    def __init__(self, output_dir: Path, seed: int) -> None:
        self.output_dir, self.seed = Path(output_dir), seed
        self.labels: list[torch.Tensor] = []
        self.predictions: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []  # calibrated, kept for an ensemble's members only
        self.keep_logits = False
        self.intervals: dict[str, list[float]] = {}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.labels, self.predictions, self.logits = [], [], []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.labels.append(outputs.labels.cpu())
        self.predictions.append(outputs.logits.argmax(dim=1).cpu())
        if self.keep_logits:
            self.logits.append(outputs.logits.float().cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.labels:
            return
        classes = tuple(getattr(pl_module, "classes", ()))
        kept = HeldOutPredictions(torch.cat(self.labels).numpy(), torch.cat(self.predictions).numpy(), classes)
        self.intervals = kept.intervals(self.seed)
        if trainer.world_size == 1:
            kept.save(self.output_dir)


class TemperatureFit(L.Callback):
    """On the pass that validates the best checkpoint after training (not the validations during it): fits the
    temperature on the whole validation split's logits, every DDP rank's, and sets it on the model. `fitted`
    keeps it with the validation NLL after it, for metrics.json."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.fitted: dict[str, float] = {}

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.state.fn == "validate":
            self.batches.append((outputs.logits.detach().float(), outputs.labels))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "validate" or not self.batches:
            return
        logits, labels = (torch.cat(part) for part in zip(*self.batches, strict=True))
        if trainer.world_size > 1:
            logits, labels = gathered(logits, pl_module.device), gathered(labels, pl_module.device)
        temperature = fit_temperature(logits, labels)
        pl_module.temperature = temperature
        self.fitted = {"temperature": temperature, "val_loss_calibrated": nll(logits, labels, temperature)}
        self.batches = []


def gathered(part: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every DDP rank's `part`, concatenated on the CPU (shards may differ in length by a few images).
    The exchange runs on the training device, which NCCL needs."""
    return torch.cat([piece.cpu() for piece in gather_all_tensors(part.to(device))])


class EpochTimer(L.Callback):
    """Wall time of every training epoch and validation pass, logged and kept for metrics.json."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {"train_epoch": [], "val_epoch": [], "test": []}
        self._started: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds = state_dict["seconds"]

    def _start(self, phase: str) -> None:
        self._started[phase] = time.perf_counter()

    def _stop(self, phase: str, pl_module: L.LightningModule) -> None:
        if phase not in self._started:  # a resumed run ends the checkpoint's epoch without starting it
            return
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


@dataclass
class Stopwatch:
    """Where a training run's wall time goes, for metrics.json and the whole-run benchmark: consecutive
    laps (building the objects, loading the data, training, the best checkpoint's passes)."""

    laps: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        """Close the current lap as `name` (laps of one name add up) and start the next."""
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self.started, 3)
        self.started = now


class LapClock(L.Callback):
    """Closes the run's laps inside `fit`: loading the data, what comes before the first step
    (optimizers, the dataset pictures, the sanity check), and the training epochs."""

    def __init__(self, stopwatch: Stopwatch) -> None:
        self.stopwatch = stopwatch

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # called after the data module's setup
            self.stopwatch.lap("data")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopwatch.lap("before training")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopwatch.lap("training epochs")


class RandomState(L.Callback):
    """Saves the random-number generators' states in every checkpoint and restores them on resume,
    so dropout masks after a resume are the ones an uninterrupted run would draw."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.copy()), position, has_gauss, cached],
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, position, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy(), position, has_gauss, cached))
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where the run keeps last.ckpt: beside its best checkpoint, else in <root>/checkpoints."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class GracefulStop(L.Callback):
    """SIGTERM, what a cluster sends before preemption, makes Lightning stop after the current step,
    once its logs are written; the first Ctrl-C is turned into that same SIGTERM, and a second one stops
    at once. Either way last.ckpt is saved before the stop leaves `fit`, so the run can be resumed.

    (Lightning's OnExceptionCheckpoint saves on any error, where a diverged run would overwrite the last
    good last.ckpt, and its teardown deletes the file it names at the end of every fit.)"""

    def __init__(self, requests: StopRequests) -> None:
        self.requests = requests
        self._previous_handler: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.requests.ctrl_c.is_set():
            raise KeyboardInterrupt
        self.requests.ctrl_c.set()
        log.warning("Ctrl-C: stopping after this step and saving last.ckpt (press Ctrl-C again to stop at once)")
        os.kill(os.getpid(), signal.SIGTERM)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handler()
        if self.requests.signal_behind(exception) is not None:
            path = last_checkpoint_path(trainer)
            trainer.save_checkpoint(path)
            log.info("Saved %s", path)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None


def early_stopping(patience: int | None, **settings: Any) -> EarlyStopping | None:
    """Lightning's EarlyStopping, or None (no callback) while `patience` is null."""
    return None if patience is None else EarlyStopping(patience=patience, **settings)


def early_stop_reason(trainer: L.Trainer) -> str | None:
    """Why early stopping ended the run, or None if it did not."""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch:
            return callback.stopping_reason_message
    return None
