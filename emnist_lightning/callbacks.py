"""Lightning callbacks that turn a run into files and TensorBoard entries."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torchmetrics.functional.classification import multiclass_confusion_matrix

from emnist_lightning import plots

log = logging.getLogger(__name__)


def publish_figure(fig: Figure, path: Path, trainer: L.Trainer, tag: str) -> None:
    """Save `fig` as PNG at `path` and, when the run logs to TensorBoard, as an image there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=trainer.global_step, close=False)
    plt.close(fig)


def display_images(images: torch.Tensor) -> np.ndarray:
    """(N, 1, 28, 28) normalised images -> (N, 28, 28) floats for imshow (which rescales anyway)."""
    return images.detach().float().cpu().squeeze(1).numpy()


class MetricHistory(L.Callback):
    """Validation metrics per epoch, kept for metrics.json and sweep reports."""

    def __init__(self, keys: tuple[str, ...] = ("val/acc", "val/macro_acc", "val/loss", "train/loss_epoch")) -> None:
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


class TestDiagnostics(L.Callback):
    """After testing: the confusion matrix and a grid of test images with their predictions."""

    def __init__(self, output_dir: str | Path, grid_size: int = 48) -> None:
        self.output_dir = Path(output_dir)
        self.grid_size = grid_size
        self.predictions: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.sample_images: list[torch.Tensor] = []
        self.confusion: np.ndarray | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.predictions, self.labels, self.sample_images = [], [], []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.predictions.append(outputs["logits"].argmax(dim=1).cpu())
        self.labels.append(outputs["labels"].cpu())
        kept = sum(len(images) for images in self.sample_images)
        if kept < self.grid_size:
            self.sample_images.append(outputs["images"][: self.grid_size - kept].cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        predictions, labels = torch.cat(self.predictions), torch.cat(self.labels)
        classes = trainer.datamodule.classes
        self.confusion = multiclass_confusion_matrix(predictions, labels, len(classes)).numpy()
        np.savetxt(self.output_dir / "confusion_matrix.csv", self.confusion, fmt="%d", delimiter=",")
        fig = plots.confusion_matrix_figure(self.confusion, classes, title="Confusion matrix (test, counts)")
        publish_figure(fig, self.output_dir / "confusion_matrix.png", trainer, "test/confusion_matrix")
        count = sum(len(images) for images in self.sample_images)
        fig = plots.prediction_grid_figure(
            display_images(torch.cat(self.sample_images)),
            labels[:count].numpy(),
            predictions[:count].numpy(),
            classes,
        )
        publish_figure(fig, self.output_dir / "test_predictions.png", trainer, "test/predictions")
        log.info("Saved confusion matrix and prediction grid in %s", self.output_dir)
