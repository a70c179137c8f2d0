"""One LightningModule for training and evaluation; the families differ only in their network."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from emnist_lightning.data import NUM_CLASSES
from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.networks import CNN, MLP
from emnist_lightning.optim import LRSchedule

OptimizerFactory = Callable[..., Optimizer]
CLASS_KEY = "emnist_lightning_class"  # checkpoint entry naming the module class to rebuild


# Labels are range-checked when the data is loaded. Validating them again in every update would
# cost a device sync per batch on a GPU (torch.unique, and a NaN check for the mean loss).
def accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
            "macro_acc": MulticlassAccuracy(num_classes, average="macro", validate_args=False),
        },
        prefix=prefix,
    )


def accuracies(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accuracy and macro accuracy from a confusion matrix (true class in rows), as MulticlassAccuracy
    computes them: the macro mean counts every class that occurs as a label or a prediction."""
    correct, labelled = confusion.diagonal(), confusion.sum(dim=1)
    occurs = (labelled + confusion.sum(dim=0)) > 0
    recall = correct / labelled.clamp(min=1)
    return {"acc": correct.sum() / confusion.sum(), "macro_acc": recall[occurs].mean()}


class EMNISTClassifier(L.LightningModule):
    """Loss, metrics, L1/L2 penalties, optimizer and scheduler set-up for any network.

    Subclasses build the network from their own (saved) hyperparameters, so
    `Subclass.load_from_checkpoint(path)` needs nothing but the checkpoint.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None,
        scheduler: LRSchedule | None,
        l1: float,
        l2: float,
        compile: bool,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if l1 < 0 or l2 < 0:
            raise ConfigError(f"regularization.l1={l1} and regularization.l2={l2} must be >= 0")
        self.network = network
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.schedule = scheduler
        self.l1, self.l2 = l1, l2
        self.channels_last = channels_last
        if channels_last:  # weights and inputs both NHWC, so convolutions need no layout changes
            network.to(memory_format=torch.channels_last)
        if compile:
            network.compile()  # in place, so checkpoints keep the plain parameter names
        # Training accuracies come from one confusion matrix, updated every step: a third of the cost
        # of updating two MulticlassAccuracy metrics (~46 vs ~135 us per CPU step, README: Performance).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.train_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.val_metrics = accuracy_metrics(num_classes, "val/")
        self.test_metrics = accuracy_metrics(num_classes, "test/")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.network(images)

    def penalized_weights(self) -> Iterator[nn.Parameter]:
        """Weights of linear and conv layers; biases and norm parameters are not penalised."""
        for module in self.network.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                yield module.weight

    def weight_penalty(self) -> torch.Tensor:
        """l1 * sum|w| + l2 * sum w^2 over `penalized_weights`."""
        penalty = torch.zeros((), device=self.device)
        for weight in self.penalized_weights():
            if self.l1:
                penalty = penalty + self.l1 * weight.abs().sum()
            if self.l2:
                penalty = penalty + self.l2 * weight.square().sum()
        return penalty

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        data_loss = F.cross_entropy(logits, labels)
        penalty = self.weight_penalty() if self.l1 or self.l2 else None
        loss = data_loss if penalty is None else data_loss + penalty
        # Metrics accumulate on the device and are logged once per epoch: logging the loss and two
        # metric objects through self.log every step cost 7.45 vs 6.61 ms per MLP step (benchmark).
        self.train_loss.update(loss.detach())
        self.train_confusion.update(logits.detach(), labels)
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
        self.log("train/loss", self.train_loss.compute())
        self.log_dict({f"train/{name}": value for name, value in accuracies(self.train_confusion.compute()).items()})
        self.train_loss.reset()
        self.train_confusion.reset()

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], metrics: MetricCollection, stage: str
    ) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metrics.update(logits, labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True)
        self.log_dict(metrics, on_epoch=True, prog_bar=True)
        return {"logits": logits, "labels": labels, "images": images}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, self.test_metrics, "test")

    def on_validation_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("val/loss")
        if not self.trainer.sanity_checking and loss is not None and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: validation loss is {loss.item()} after epoch {self.current_epoch}; "
                "lower optimizer.lr or regularization coefficients"
            )

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        if self.optimizer_factory is None:
            raise ConfigError("this module was built without an optimizer; pass optimizer=... to train it")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.schedule is None:
            return optimizer
        scheduler = self.schedule.lightning_config(
            optimizer,
            total_steps=int(self.trainer.estimated_stepping_batches),
            total_epochs=int(self.trainer.max_epochs or 1),
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())


class MLPClassifier(EMNISTClassifier):
    """The MLP family: three or more hidden layers."""

    def __init__(
        self,
        hidden_dims: Sequence[int] = (512, 256, 128),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float | Sequence[float] = 0.0,
        num_classes: int = NUM_CLASSES,
        optimizer: OptimizerFactory | None = None,
        scheduler: LRSchedule | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        compile: bool = False,
    ) -> None:
        network = MLP(hidden_dims, num_classes, activation, batch_norm, dropout)
        super().__init__(network, num_classes, optimizer, scheduler, l1, l2, compile)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)


class CNNClassifier(EMNISTClassifier):
    """The CNN family: two or more conv layers, then a fully connected head."""

    def __init__(
        self,
        channels: Sequence[int] = (32, 64),
        kernel_size: int | Sequence[int] = 3,
        pooling: str | Sequence[str] = "max",
        head_dims: Sequence[int] = (256,),
        activation: str = "relu",
        batch_norm: bool = False,
        conv_dropout: float = 0.0,
        dropout: float = 0.0,
        num_classes: int = NUM_CLASSES,
        optimizer: OptimizerFactory | None = None,
        scheduler: LRSchedule | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        compile: bool = False,
        channels_last: bool = False,
    ) -> None:
        network = CNN(
            channels, num_classes, kernel_size, pooling, head_dims, activation, batch_norm, conv_dropout, dropout
        )
        super().__init__(network, num_classes, optimizer, scheduler, l1, l2, compile, channels_last)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; pass ckpt_path= a .ckpt file written by train.py")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({type(err).__name__}); it is corrupt or not a checkpoint"
        ) from err


def resolve_class(qualified_name: str) -> type[EMNISTClassifier]:
    module_name, _, class_name = qualified_name.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, EMNISTClassifier)):
        raise CheckpointError(f"checkpoint names class '{qualified_name}', which is not an emnist_lightning classifier")
    return cls


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> EMNISTClassifier:
    """Rebuild whichever classifier wrote the checkpoint, with its trained weights."""
    checkpoint = read_checkpoint(path)
    if CLASS_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"checkpoint '{path}' was not written by emnist_lightning's train.py; it cannot be evaluated here"
        )
    cls = resolve_class(checkpoint[CLASS_KEY])
    try:
        return cls.load_from_checkpoint(path, map_location=map_location)
    except (RuntimeError, TypeError, KeyError) as err:
        raise CheckpointError(f"checkpoint '{path}' does not fit {cls.__name__}: {err}".splitlines()[0]) from err
