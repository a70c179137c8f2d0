"""Lightning callbacks that turn a run into files and TensorBoard entries."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import nn

from emnist_lightning import analysis, plots
from emnist_lightning.networks import ACTIVATIONS, CNN, MLP

log = logging.getLogger(__name__)


def tensorboard_loggers(trainer: L.Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def publish_figure(fig: Figure, path: Path, trainer: L.Trainer, tag: str) -> None:
    """Save `fig` as PNG at `path` and as an image in each of the run's TensorBoard logs."""
    writers = [logger.experiment for logger in tensorboard_loggers(trainer)]
    plots.save_figure(fig, path, writers, tag, trainer.global_step)


def display_images(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) normalised images -> (N, 28, 28) CPU floats for imshow (which rescales anyway)."""
    return images.detach().float().cpu().squeeze(1)


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


class DatasetSamples(L.Callback):
    """At the start of training: a grid of random training images per class, as PNG and in TensorBoard."""

    def __init__(self, output_dir: str | Path, per_class: int = 4, seed: int = 0) -> None:
        self.output_dir, self.per_class, self.seed = Path(output_dir), per_class, seed

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None:  # trained from plain dataloaders: no classes to draw
            return
        train = datamodule.train_set
        samples = analysis.samples_per_class(
            train.images.cpu(), train.labels.cpu(), self.per_class, datamodule.num_classes, self.seed
        )
        fig = plots.class_samples_figure(samples, datamodule.classes)
        publish_figure(fig, self.output_dir / "dataset_samples.png", trainer, "data/samples")


@dataclass
class TestOutputs:
    """Everything the test pass produced, gathered on the CPU."""

    probabilities: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor

    # Cached: the galleries and pair examples read these many times.
    @cached_property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(dim=1)

    @cached_property
    def confidence(self) -> torch.Tensor:
        return self.probabilities.max(dim=1).values


class TestDiagnostics(L.Callback):
    """After testing: confusion matrices, per-class metrics, confused pairs, galleries, calibration."""

    def __init__(
        self,
        output_dir: str | Path,
        hide_diagonal: bool = True,
        top_pairs: int = 10,
        examples_per_pair: int = 8,
        gallery_size: int = 40,
        calibration_bins: int = 15,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.hide_diagonal = hide_diagonal
        self.top_pairs, self.examples_per_pair = top_pairs, examples_per_pair
        self.gallery_size, self.calibration_bins = gallery_size, calibration_bins
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.outputs: TestOutputs | None = None
        self.confusion: np.ndarray | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        probabilities = outputs["logits"].float().softmax(dim=1)
        self.batches.append((probabilities.cpu(), outputs["labels"].cpu(), display_images(outputs["images"])))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        probabilities, labels, images = (torch.cat(parts) for parts in zip(*self.batches, strict=True))
        self.outputs = TestOutputs(probabilities, labels, images)
        ece = analysis.expected_calibration_error(probabilities, labels, self.calibration_bins)
        pl_module.log("test/ece", ece)
        classes = trainer.datamodule.classes
        self._confusion(trainer, classes)
        self._per_class(trainer, classes)
        self._confused_pairs(trainer, classes)
        self._galleries(trainer, classes)
        fig = plots.reliability_figure(
            self.outputs.confidence.numpy(), (self.outputs.predictions == labels).numpy(), self.calibration_bins, ece
        )
        publish_figure(fig, self.output_dir / "reliability.png", trainer, "test/reliability")
        log.info("Saved test diagnostics in %s", self.output_dir)

    def _confusion(self, trainer: L.Trainer, classes: tuple[str, ...]) -> None:
        self.confusion = analysis.confusion_matrix(self.outputs.predictions, self.outputs.labels, len(classes))
        np.savetxt(self.output_dir / "confusion_matrix.csv", self.confusion, fmt="%d", delimiter=",")
        fig = plots.confusion_matrix_figure(self.confusion, classes, title="Confusion matrix (test, counts)")
        publish_figure(fig, self.output_dir / "confusion_matrix.png", trainer, "test/confusion_matrix")
        title = "Confusion matrix (test, fraction of each true class" + (
            ", diagonal hidden)" if self.hide_diagonal else ")"
        )
        fig = plots.confusion_matrix_figure(
            self.confusion, classes, normalize=True, hide_diagonal=self.hide_diagonal, title=title
        )
        publish_figure(
            fig, self.output_dir / "confusion_matrix_normalized.png", trainer, "test/confusion_matrix_normalized"
        )

    def _per_class(self, trainer: L.Trainer, classes: tuple[str, ...]) -> None:
        table = analysis.per_class_metrics(self.outputs.probabilities, self.outputs.labels, classes)
        table.sort_values("f1").to_csv(self.output_dir / "per_class_metrics.csv", index=False, float_format="%.4f")
        publish_figure(
            plots.per_class_metrics_figure(table), self.output_dir / "per_class_metrics.png", trainer, "test/per_class"
        )

    def _confused_pairs(self, trainer: L.Trainer, classes: tuple[str, ...]) -> None:
        pairs = analysis.most_confused_pairs(self.confusion, self.top_pairs)
        rows = [{"true": classes[t], "predicted": classes[p], "count": n} for t, p, n in pairs]
        pd.DataFrame(rows, columns=["true", "predicted", "count"]).to_csv(
            self.output_dir / "confused_pairs.csv", index=False
        )
        outputs = self.outputs
        examples = [
            (classes[t], classes[p], n, outputs.images[(outputs.labels == t) & (outputs.predictions == p)].numpy())
            for t, p, n in pairs
        ]
        fig = plots.confused_pairs_figure(examples, self.examples_per_pair)
        publish_figure(fig, self.output_dir / "confused_pairs.png", trainer, "test/confused_pairs")

    def _galleries(self, trainer: L.Trainer, classes: tuple[str, ...]) -> None:
        outputs = self.outputs
        first = slice(0, 48)  # slicing stops at the end of a shorter test set
        fig = plots.prediction_grid_figure(
            outputs.images[first].numpy(), outputs.labels[first].numpy(), outputs.predictions[first].numpy(), classes
        )
        publish_figure(fig, self.output_dir / "test_predictions.png", trainer, "test/predictions")
        wrong = (outputs.predictions != outputs.labels).nonzero().squeeze(1)
        wrong = wrong[outputs.confidence[wrong].argsort(descending=True)][: self.gallery_size]
        captions = [
            f"{classes[outputs.labels[i]]} → {classes[outputs.predictions[i]]} {outputs.confidence[i]:.0%}"
            for i in wrong.tolist()
        ]
        fig = plots.image_grid_figure(
            outputs.images[wrong].numpy(),
            captions,
            columns=10,
            caption_colors=["crimson"] * len(captions),
            title="Most confident mistakes (true → predicted, confidence)",
        )
        publish_figure(fig, self.output_dir / "misclassified.png", trainer, "test/misclassified")


class ModelPictures(L.Callback):
    """After testing: what the network learned. CNN: first-layer filters and the feature maps of
    one test image per conv block. MLP: first-layer weights of the strongest units as 28x28 images."""

    def __init__(self, output_dir: str | Path, units: int = 32, channels: int = 8) -> None:
        self.output_dir, self.units, self.channels = Path(output_dir), units, channels

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        network = pl_module.network
        if isinstance(network, CNN):
            self._cnn(trainer, pl_module, network)
        elif isinstance(network, MLP):
            first = next(m for m in network.modules() if isinstance(m, nn.Linear)).weight.detach().float().cpu()
            strongest = first.norm(dim=1).argsort(descending=True)[: self.units]
            fig = plots.filters_figure(
                first[strongest].reshape(-1, 28, 28).numpy(),
                f"First-layer weights of the {len(strongest)} strongest units",
            )
            publish_figure(fig, self.output_dir / "model_first_layer.png", trainer, "model/first_layer")

    @torch.no_grad()
    def _cnn(self, trainer: L.Trainer, pl_module: L.LightningModule, network: CNN) -> None:
        first_conv = next(m for m in network.features if isinstance(m, nn.Conv2d))
        filters = first_conv.weight.detach().float().cpu()[:, 0]
        fig = plots.filters_figure(filters.numpy(), f"First conv layer: {len(filters)} filters")
        publish_figure(fig, self.output_dir / "model_filters.png", trainer, "model/filters")
        datamodule = trainer.datamodule
        image = datamodule.normalize(datamodule.test_set.images[:1]).to(pl_module.device)
        maps, features = [], image
        for layer in network.features:
            features = layer(features)
            if isinstance(layer, tuple(ACTIVATIONS.values())):
                maps.append(features[0].float().cpu().numpy())
        fig = plots.feature_maps_figure(image[0, 0].float().cpu().numpy(), maps, self.channels)
        publish_figure(fig, self.output_dir / "feature_maps.png", trainer, "model/feature_maps")


class ParameterHistograms(L.Callback):
    """Weight and gradient histograms in TensorBoard once per epoch (costly: off unless enabled)."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._gradients_pending = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._gradients_pending = self.enabled

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not self._gradients_pending:
            return
        self._gradients_pending = False
        for logger in tensorboard_loggers(trainer):
            for name, parameter in pl_module.network.named_parameters():
                if parameter.grad is not None:
                    logger.experiment.add_histogram(f"gradients/{name}", parameter.grad, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        for logger in tensorboard_loggers(trainer):
            for name, parameter in pl_module.network.named_parameters():
                logger.experiment.add_histogram(f"weights/{name}", parameter, trainer.current_epoch)
