"""One LightningModule that trains and evaluates any network of `NETWORKS`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from emnist_lightning.data.augment import shifted_views
from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.models.calibration import TEMPERATURE_KEY, mean_of_probabilities, positive_number
from emnist_lightning.models.losses import Targets, WeightPenalty
from emnist_lightning.models.metrics import accuracies, accuracy_metrics, calibration_metrics
from emnist_lightning.models.networks import build_network
from emnist_lightning.models.optim import LRSchedule

OptimizerFactory = Callable[..., Optimizer]


class TrainingLoss(Protocol):
    """A training loss (models/losses.py, built from conf/loss/): prepared once before fitting, then called
    on every training batch."""

    def prepare(self, device: torch.device, datamodule: Any) -> None: ...

    def __call__(self, logits: torch.Tensor, targets: Targets, images: torch.Tensor) -> torch.Tensor: ...


Mixing = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Targets]]


class EvaluationStepOutput(NamedTuple):
    """What `validation_step` and `test_step` hand to callbacks: the batch's logits, labels and (normalised)
    images."""

    logits: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor


class EMNISTClassifier(L.LightningModule):
    """Loss, metrics, weight penalty, batch mixing, optimizer and scheduler around the network called
    `network`. The training-only objects (`loss`, `penalty`, `mixing`, `optimizer`, `scheduler`) come built
    from their config groups; without a loss the model trains on plain cross-entropy.

    The network's name and arguments (`network_args`, the other keys of conf/model/) are saved as
    hyperparameters with the EMNIST split and the class each output stands for, so
    `EMNISTClassifier.load_from_checkpoint(path, weights_only=True)` rebuilds any family, and everything
    downstream (evaluation, prediction, export, the drawing page) names the model's own classes.
    """

    def __init__(
        self,
        network: str,
        *,
        split: str,
        classes: Sequence[str],
        optimizer: OptimizerFactory | None = None,
        scheduler: LRSchedule | None = None,
        loss: TrainingLoss | None = None,
        penalty: WeightPenalty | None = None,
        mixing: Mixing | None = None,
        compile: bool = False,
        **network_args: Any,
    ) -> None:
        super().__init__()
        classes = [str(name) for name in classes]  # a list: saved in the checkpoint and hparams.yaml as it is
        # Only what rebuilds the model: the training objects (a distillation teacher among them) stay out.
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "loss", "penalty", "mixing"], logger=False)
        self.split, self.classes = split, tuple(classes)
        num_classes = self.num_classes = len(self.classes)
        self.network = build_network(network, num_classes, **network_args)
        self.optimizer_factory = optimizer
        self.schedule = scheduler
        self.loss, self.penalty, self.mixing = loss, penalty, mixing
        # Test-time augmentation, set by evaluate.py: test on the mean probabilities of shifted views.
        self.test_time_shift = 0
        # Divides the logits for calibrated probabilities; fitted after training (models/calibration.py) and
        # kept in the checkpoint beside the weights (1 until it is fitted).
        self.temperature = 1.0
        if compile:
            self.network.compile()  # in place, so checkpoints keep the plain parameter names
        # Training accuracies come from one confusion matrix updated every step, which costs a third
        # of updating two MulticlassAccuracy metrics; they are logged once per epoch.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.train_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.val_metrics = accuracy_metrics(num_classes, "val/")
        self.test_metrics = accuracy_metrics(num_classes, "test/", calibration=True)
        self.calibrated_test_metrics = calibration_metrics(num_classes, "test/", "_calibrated")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)

    def penalized_weights(self) -> Iterator[nn.Parameter]:
        """The weights the network's family names for L1 and L2 (networks/registry.py: NetworkParts)."""
        return self.network.penalized_weights()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        images, targets = self.mixing(images, labels) if self.mixing is not None else (images, Targets(labels))
        logits = self(images)
        if self.loss is None:
            data_loss = targets.mean_over(lambda given: F.cross_entropy(logits, given))
        else:
            data_loss = self.loss(logits, targets, images)
        penalty = self.penalty(self.penalized_weights(), self.device) if self.penalty and self.penalty.active else None
        loss = data_loss if penalty is None else data_loss + penalty
        # Metrics accumulate on the device and are logged once per epoch: self.log on every step
        # costs more than the rest of an MLP step's bookkeeping together.
        self.train_loss.update(loss.detach())
        self.train_confusion.update(logits.detach(), targets.dominant())
        if self.is_logging_step():
            step_values = {"train/loss_step": loss}
            if penalty is not None:
                step_values |= {"train/data_loss": data_loss, "train/penalty": penalty}
            self.log_dict(step_values, on_step=True, on_epoch=False)
        return loss

    def is_logging_step(self) -> bool:
        """True on the steps whose logged values the Trainer writes (every log_every_n_steps)."""
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0

    def on_train_epoch_end(self) -> None:
        if not self.train_loss.update_called:  # resumed after this epoch's last step: it was logged before
            return
        self.log("train/loss", self.train_loss.compute())
        self.log_dict({f"train/{name}": value for name, value in accuracies(self.train_confusion.compute()).items()})
        self.train_loss.reset()
        self.train_confusion.reset()

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], metrics: MetricCollection, stage: str
    ) -> torch.Tensor:
        images, labels = batch
        logits = self.view_averaged_logits(images) if stage == "test" and self.test_time_shift else self(images)
        # sync_dist: the mean over DDP ranks (the torchmetrics below reduce their own states)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), on_epoch=True, prog_bar=True, sync_dist=True)
        metrics.update(logits.float(), labels)  # float: calibration bins of bf16 probabilities are coarse
        self.log_dict(metrics, on_epoch=True, prog_bar=True)
        if stage != "test":
            return logits
        calibrated = logits.float() / self.temperature
        self.log("test/loss_calibrated", F.cross_entropy(calibrated, labels), on_epoch=True, sync_dist=True)
        self.calibrated_test_metrics.update(calibrated, labels)
        self.log_dict(self.calibrated_test_metrics, on_epoch=True)
        return calibrated

    def view_averaged_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Log of the mean softmax over the images shifted by up to `test_time_shift` pixels (one
        forward pass over all views; logsumexp keeps tiny probabilities finite)."""
        views = shifted_views(images, self.test_time_shift)
        return mean_of_probabilities(self(torch.cat(views)).split(len(images)))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> EvaluationStepOutput:
        return EvaluationStepOutput(self._evaluate(batch, self.val_metrics, "val"), batch[1], batch[0])

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> EvaluationStepOutput:
        """The outputs' logits are calibrated (divided by the temperature): what callbacks and people see."""
        return EvaluationStepOutput(self._evaluate(batch, self.test_metrics, "test"), batch[1], batch[0])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TEMPERATURE_KEY] = self.temperature

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.temperature = positive_number(checkpoint.get(TEMPERATURE_KEY, 1.0), "its temperature")

    def on_validation_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("val/loss")
        if not self.trainer.sanity_checking and loss is not None and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: validation loss is {loss.item()} after epoch {self.current_epoch}; "
                "lower optimizer.lr or regularization coefficients"
            )

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        if tuple(getattr(data, "classes", self.classes)) != self.classes:
            raise CheckpointError(
                f"the model was trained on EMNIST {self.split} ({self.num_classes} classes) but the data is "
                f"EMNIST {data.split.name} ({data.num_classes} classes, not the same); test it on "
                f"{self.split} files: data={self.split}"
            )

    def on_fit_start(self) -> None:
        if self.loss is not None:  # here the model is on its device and the data's statistics are known
            self.loss.prepare(self.device, self.trainer.datamodule)

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        if self.optimizer_factory is None:
            raise ConfigError("this module was built without an optimizer; pass optimizer=... to train it")
        try:
            optimizer = self.optimizer_factory(params=self.parameters())
        # an unknown key, or a value or combination the optimizer refuses (e.g. fused and foreach both on)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"optimizer: {str(err).replace('__init__() ', '')}; fix the optimizer.* keys") from err
        if self.schedule is None:
            return optimizer
        scheduler = self.schedule.lightning_config(
            optimizer,
            total_steps=int(self.trainer.estimated_stepping_batches),
            total_epochs=int(self.trainer.max_epochs or 1),
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())
