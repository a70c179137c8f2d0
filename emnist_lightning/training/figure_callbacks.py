"""Lightning callbacks that turn a run into pictures: PNG files, and images in the run's trackers
(TensorBoard, MLflow, W&B). They gather what to draw from the run; the drawing is pictures/'s."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from emnist_lightning.models.classifier import EvaluationStepOutput
from emnist_lightning.pictures import figure_data, plots
from emnist_lightning.pictures.evaluation_figures import (
    EvaluationFigureSettings,
    EvaluationOutputs,
    write_evaluation_figures,
)
from emnist_lightning.pictures.sink import FigureSink, ImageWriter, tensorboard_images
from emnist_lightning.training.callbacks import gathered

log = logging.getLogger(__name__)


def image_writer(logger: Logger) -> ImageWriter | None:
    """How a picture reaches this logger's tracker; None for a logger that keeps no images (CSV)."""
    if isinstance(logger, TensorBoardLogger):
        return tensorboard_images(logger.experiment)
    if isinstance(logger, MLFlowLogger):
        return lambda tag, pixels, step: logger.experiment.log_image(logger.run_id, pixels, key=tag, step=step)
    if isinstance(logger, WandbLogger):
        # no step: W&B refuses steps below the last one it saw, and pictures come after the epochs' metrics
        return lambda tag, pixels, step: logger.log_image(key=tag, images=[pixels])
    return None


def tensorboard_loggers(trainer: L.Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def image_writers(trainer: L.Trainer) -> list[ImageWriter]:
    return [writer for logger in trainer.loggers if (writer := image_writer(logger)) is not None]


class FigureCallback(L.Callback):
    """A callback that draws figures into `output_dir`; `figure_seconds` is what each took (metrics.json)."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self.sinks: list[FigureSink] = []

    def sink(self, trainer: L.Trainer) -> FigureSink:
        """Figures as PNGs in `output_dir` and as images in each of the run's trackers."""
        self.sinks.append(FigureSink(self.output_dir, image_writers(trainer), trainer.global_step))
        return self.sinks[-1]

    @property
    def figure_seconds(self) -> dict[str, float]:
        return {name: seconds for sink in self.sinks for name, seconds in sink.seconds.items()}


def display_images(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) normalised images -> (N, 28, 28) CPU floats for imshow (which rescales anyway)."""
    return images.detach().float().cpu().squeeze(1)


class DatasetSamples(FigureCallback):
    """At the start of training: a grid of random training images per class and, when training batches
    are augmented, one image per class above augmented views of it; as PNGs and in TensorBoard."""

    def __init__(self, output_dir: str | Path, per_class: int, augmented_views: int, seed: int) -> None:
        super().__init__(output_dir)
        self.per_class = per_class
        self.augmented_views = augmented_views
        self.seed = seed

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        # plain dataloaders have no classes; a resumed run drew it; in DDP the main process draws
        if datamodule is None or trainer.ckpt_path or not trainer.is_global_zero:
            return
        train = datamodule.train_set
        samples = figure_data.samples_per_class(
            train.images.cpu(), train.labels.cpu(), self.per_class, datamodule.num_classes, self.seed
        )
        sink, classes = self.sink(trainer), list(datamodule.classes)
        jobs = [sink.job("dataset_samples.png", "data/samples", plots.class_samples_figure, samples, classes)]
        if datamodule.augment is not None:
            views = figure_data.augmented_views(samples[:, 0], datamodule.augment, self.augmented_views, self.seed)
            title = "top row: a training image; below: augmented views of it"
            draw = plots.class_samples_figure
            jobs.append(sink.job("augmented_samples.png", "data/augmented_samples", draw, views, classes, title=title))
        sink.publish(jobs)


class EvaluationStepCallback(FigureCallback):
    """A callback that reads what each `test_step` returned, through `collect`."""

    def collect(self, outputs: EvaluationStepOutput, batch_idx: int) -> None:
        raise NotImplementedError

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: EvaluationStepOutput,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.collect(outputs, batch_idx)


class EvaluationDiagnostics(EvaluationStepCallback):
    """Gathers the test pass's predictions, then writes the test figures (pictures/evaluation_figures.py)."""

    def __init__(self, output_dir: str | Path, **settings: Any) -> None:
        super().__init__(output_dir)
        self.settings = EvaluationFigureSettings(**settings)
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.outputs: EvaluationOutputs | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = []

    def collect(self, outputs: EvaluationStepOutput, batch_idx: int) -> None:
        probabilities = outputs.logits.float().softmax(dim=1)
        self.batches.append((probabilities.cpu(), outputs.labels.cpu(), display_images(outputs.images)))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        parts = [torch.cat(part) for part in zip(*self.batches, strict=True)]
        if trainer.world_size > 1:  # each DDP rank tested its shard: the report shows the whole split
            parts = [gathered(part, pl_module.device) for part in parts]
        if not trainer.is_global_zero:
            return
        self.outputs = EvaluationOutputs(*parts, temperature=float(getattr(pl_module, "temperature", 1.0)))
        write_evaluation_figures(self.outputs, trainer.datamodule.classes, self.sink(trainer), self.settings)
        log.info("Saved test diagnostics in %s", self.output_dir)


class ModelPictures(EvaluationStepCallback):
    """After testing: what the network learned, as its family draws it (networks/registry.py:
    NetworkParts): its first layer's weights, and the feature maps of one test image after each stage."""

    def __init__(self, output_dir: str | Path, units: int, channels: int) -> None:
        super().__init__(output_dir)
        self.units, self.channels = units, channels
        self.first_image: torch.Tensor | None = None

    def collect(self, outputs: EvaluationStepOutput, batch_idx: int) -> None:
        if batch_idx == 0:
            self.first_image = outputs.images[:1].detach()

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        network, sink, jobs = pl_module.network, self.sink(trainer), []
        first_layer = network.first_layer_picture(self.units)
        if first_layer is not None:
            name, draw = first_layer.name, plots.filters_figure
            jobs.append(sink.job(f"model_{name}.png", f"model/{name}", draw, first_layer.images, first_layer.title))
        maps = network.feature_maps(self.first_image) if self.first_image is not None else []
        if maps:
            image, draw = self.first_image[0, 0].float().cpu().numpy(), plots.feature_maps_figure
            jobs.append(sink.job("feature_maps.png", "model/feature_maps", draw, image, maps, self.channels))
        sink.publish(jobs)


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


def figure_seconds(callbacks: list[L.Callback]) -> dict[str, dict[str, float]]:
    """{'pictures': seconds drawing each figure, by file}, for the record."""
    drawn = [callback.figure_seconds for callback in callbacks if isinstance(callback, FigureCallback)]
    return {"pictures": {name: seconds for each in drawn for name, seconds in each.items()}}
