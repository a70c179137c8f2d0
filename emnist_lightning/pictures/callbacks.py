"""Lightning callbacks that turn a run into pictures: PNG files and TensorBoard images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import nn
from torchmetrics.utilities.distributed import gather_all_tensors

from emnist_lightning.models.classifier import TestStepOutput
from emnist_lightning.models.networks import ACTIVATIONS, CNN, MLP
from emnist_lightning.pictures import analysis, plots
from emnist_lightning.pictures.painter import shared_painter
from emnist_lightning.pictures.sink import FigureSink
from emnist_lightning.pictures.test_report import TestOutputs, TestReportSettings, write_test_report

log = logging.getLogger(__name__)


def tensorboard_loggers(trainer: L.Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def trainer_sink(trainer: L.Trainer, output_dir: Path) -> FigureSink:
    """Figures as PNGs in `output_dir` and as images in each of the run's TensorBoard logs."""
    writers = [logger.experiment for logger in tensorboard_loggers(trainer)]
    return FigureSink(output_dir, writers, trainer.global_step)


def gathered(part: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every DDP rank's `part`, concatenated on the CPU (shards may differ in length by a few images).
    The exchange runs on the training device, which NCCL needs."""
    return torch.cat([piece.cpu() for piece in gather_all_tensors(part.to(device))])


def display_images(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) normalised images -> (N, 28, 28) CPU floats for imshow (which rescales anyway)."""
    return images.detach().float().cpu().squeeze(1)


class DatasetSamples(L.Callback):
    """At the start of training: a grid of random training images per class and, when training batches
    are augmented, one image per class above augmented views of it; as PNGs and in TensorBoard."""

    def __init__(self, output_dir: str | Path, per_class: int = 4, augmented_views: int = 5, seed: int = 0) -> None:
        self.output_dir = Path(output_dir)
        self.per_class = per_class
        self.augmented_views = augmented_views
        self.seed = seed

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        # plain dataloaders have no classes; a resumed run drew it; in DDP the main process draws
        if datamodule is None or trainer.ckpt_path or not trainer.is_global_zero:
            return
        train = datamodule.train_set
        samples = analysis.samples_per_class(
            train.images.cpu(), train.labels.cpu(), self.per_class, datamodule.num_classes, self.seed
        )
        sink, classes = trainer_sink(trainer, self.output_dir), list(datamodule.classes)
        jobs = [sink.job("dataset_samples.png", "data/samples", plots.class_samples_figure, samples, classes)]
        if datamodule.augment is not None:
            views = analysis.augmented_views(samples[:, 0], datamodule.augment, self.augmented_views, self.seed)
            title = "top row: a training image; below: augmented views of it"
            draw = plots.class_samples_figure
            jobs.append(sink.job("augmented_samples.png", "data/augmented_samples", draw, views, classes, title=title))
        sink.publish(jobs)


class TestStepCallback(L.Callback):
    """A callback that reads what each `test_step` returned, through `collect`."""

    def collect(self, outputs: TestStepOutput, batch_idx: int) -> None:
        raise NotImplementedError

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: TestStepOutput,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.collect(outputs, batch_idx)


class TestDiagnostics(TestStepCallback):
    """Gathers the test pass's predictions, then writes the test report (`test_report.py`)."""

    def __init__(self, output_dir: str | Path, **settings: Any) -> None:
        self.output_dir = Path(output_dir)
        self.settings = TestReportSettings(**settings)
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.outputs: TestOutputs | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = []

    def collect(self, outputs: TestStepOutput, batch_idx: int) -> None:
        probabilities = outputs.logits.float().softmax(dim=1)
        self.batches.append((probabilities.cpu(), outputs.labels.cpu(), display_images(outputs.images)))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        parts = [torch.cat(part) for part in zip(*self.batches, strict=True)]
        if trainer.world_size > 1:  # each DDP rank tested its shard: the report shows the whole split
            parts = [gathered(part, pl_module.device) for part in parts]
        if not trainer.is_global_zero:
            return
        self.outputs = TestOutputs(*parts)
        write_test_report(
            self.outputs, trainer.datamodule.classes, trainer_sink(trainer, self.output_dir), self.settings
        )
        log.info("Saved test diagnostics in %s", self.output_dir)


class ModelPictures(TestStepCallback):
    """After testing: what the network learned. CNN: first-layer filters and the feature maps of
    one test image per conv block. MLP: first-layer weights of the strongest units as 28x28 images."""

    def __init__(self, output_dir: str | Path, units: int = 32, channels: int = 8) -> None:
        self.output_dir, self.units, self.channels = Path(output_dir), units, channels
        self.first_image: torch.Tensor | None = None

    def collect(self, outputs: TestStepOutput, batch_idx: int) -> None:
        if batch_idx == 0:
            self.first_image = outputs.images[:1].detach()

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        network, sink = pl_module.network, trainer_sink(trainer, self.output_dir)
        if isinstance(network, CNN) and self.first_image is not None:
            self._cnn(sink, network, self.first_image)
        elif isinstance(network, MLP):
            first = next(m for m in network.modules() if isinstance(m, nn.Linear)).weight.detach().float().cpu()
            strongest = first.norm(dim=1).argsort(descending=True)[: self.units]
            title = f"First-layer weights of the {len(strongest)} strongest units"
            weights = first[strongest].reshape(-1, 28, 28).numpy()
            sink.publish([sink.job("model_first_layer.png", "model/first_layer", plots.filters_figure, weights, title)])

    @torch.no_grad()
    def _cnn(self, sink: FigureSink, network: CNN, image: torch.Tensor) -> None:
        first_conv = next(m for m in network.features if isinstance(m, nn.Conv2d))
        filters = first_conv.weight.detach().float().cpu()[:, 0].numpy()
        title = f"First conv layer: {len(filters)} filters"
        jobs = [sink.job("model_filters.png", "model/filters", plots.filters_figure, filters, title)]
        if network.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        maps, features = [], image
        for layer in network.features:
            features = layer(features)
            if isinstance(layer, tuple(ACTIVATIONS.values())):
                maps.append(features[0].float().cpu().numpy())
        draw, first_image = plots.feature_maps_figure, image[0, 0].float().cpu().numpy()
        jobs.append(sink.job("feature_maps.png", "model/feature_maps", draw, first_image, maps, self.channels))
        sink.publish(jobs)


def warm_up_painter(callbacks: Sequence[L.Callback]) -> None:
    """Start the picture helper process (painter.py) now if these callbacks will draw in this process,
    so that its imports overlap the run's own single-threaded set-up instead of its training."""
    drawing = (DatasetSamples, TestDiagnostics, ModelPictures)
    if rank_zero_only.rank == 0 and any(isinstance(callback, drawing) for callback in callbacks):
        shared_painter()


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
