"""Training losses and weight penalties as objects, each built from its YAML (conf/loss/, conf/regularization/)
and handed to the classifier: a new loss is a class here (or in a file of its own) and one YAML.

Validation and test always use plain cross-entropy, so their losses compare across runs whatever is chosen
here. A loss is measured against `Targets`: a batch's labels, or, for a mixed batch (models/mixing.py), two
label sets and the share of the first."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from emnist_lightning.errors import ConfigError

if TYPE_CHECKING:
    from emnist_lightning.data import EMNISTDataModule


class Targets(NamedTuple):
    """What a training batch is scored against. Unmixed: `labels` alone. Mixed (mixup, CutMix): image i is
    `share` of image i with `labels[i]` and `1 - share` of another with `mixed_labels[i]`."""

    labels: torch.Tensor
    mixed_labels: torch.Tensor | None = None
    share: float = 1.0

    def dominant(self) -> torch.Tensor:
        """The label with the larger share of each image: what training accuracy counts on a mixed batch."""
        return self.labels if self.mixed_labels is None or self.share >= 0.5 else self.mixed_labels

    def mean_over(self, loss_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """`loss_of(labels)`, or on a mixed batch the share-weighted sum over both label sets: the cross-entropy
        against the mixed soft label, which keeps label smoothing and class weights per label set."""
        first = loss_of(self.labels)
        if self.mixed_labels is None:
            return first
        return self.share * first + (1 - self.share) * loss_of(self.mixed_labels)


class CrossEntropy:
    """The default training loss (conf/loss/cross_entropy.yaml): cross-entropy on the labels, with label
    smoothing and, with `class_balanced`, each class weighted by 1 / its share of the training split, so a
    rare class counts in the loss as it does in macro accuracy."""

    def __init__(self, label_smoothing: float, class_balanced: bool) -> None:
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"loss.label_smoothing={label_smoothing} must be in [0, 1), e.g. 0.1")
        self.label_smoothing = label_smoothing
        self.class_balanced = class_balanced
        self.class_weights: torch.Tensor | None = None  # set by prepare() from the training labels

    def prepare(self, device: torch.device, datamodule: EMNISTDataModule) -> None:
        """Before fitting, on the model's device, with the data module set up."""
        if self.class_balanced:
            labels = datamodule.train_set.labels
            self.class_weights = balanced_class_weights(labels, datamodule.num_classes).to(device)

    def __call__(self, logits: torch.Tensor, targets: Targets, images: torch.Tensor) -> torch.Tensor:
        return targets.mean_over(
            lambda labels: F.cross_entropy(
                logits, labels, weight=self.class_weights, label_smoothing=self.label_smoothing
            )
        )


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Loss weights inversely proportional to each class's share of `labels`, 1 for every class when all
    are equally common."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    if (counts == 0).any():
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ConfigError(f"loss.class_balanced=true needs every class in the training split; {missing} have none")
    return len(labels) / (num_classes * counts)


class WeightPenalty:
    """`l1 * sum|w| + l2 * sum w^2` over the weights a network's family names (never biases or norm
    parameters); added to the loss. Not the optimizer's weight decay (README: Regularization)."""

    def __init__(self, l1: float, l2: float) -> None:
        if l1 < 0 or l2 < 0:
            raise ConfigError(f"regularization.l1={l1} and regularization.l2={l2} must be >= 0")
        self.l1, self.l2 = l1, l2

    @property
    def active(self) -> bool:
        return bool(self.l1 or self.l2)

    def __call__(self, weights: Iterable[nn.Parameter], device: torch.device) -> torch.Tensor:
        penalty = torch.zeros((), device=device)
        for weight in weights:
            if self.l1:
                penalty = penalty + self.l1 * weight.abs().sum()
            if self.l2:
                penalty = penalty + self.l2 * weight.square().sum()
        return penalty
