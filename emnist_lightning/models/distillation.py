"""Knowledge distillation (Hinton et al., 2015): the student learns from a teacher's softened probabilities
as well as from the labels, so a study can tell how much of the gap between two families is the
architecture and how much the training signal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.losses import CrossEntropy, Targets

if TYPE_CHECKING:
    from emnist_lightning.data import EMNISTDataModule


class DistilledLoss(CrossEntropy):
    """`(1 - weight) * CE(targets) + weight * T^2 * KL(teacher_T || student_T)` (conf/loss/distilled.yaml),
    where `_T` is a softmax at temperature T (the T^2 keeps the soft term's gradients on the scale of the
    hard one's). On a mixed batch the teacher reads the mixed images.

    `teacher` maps raw pixels in [0, 1] to logits (a checkpoint's pixel classifier, or an ensemble's), so it
    applies its own normalisation; the student's batches are turned back into pixels with the data module's
    statistics, known when fitting starts. A plain attribute of a plain object, not a submodule: the teacher's
    weights stay out of the student's checkpoint."""

    def __init__(
        self,
        teacher: nn.Module,
        temperature: float,
        weight: float,
        label_smoothing: float,
        class_balanced: bool,
    ) -> None:
        super().__init__(label_smoothing, class_balanced)
        if temperature <= 0 or not 0 <= weight <= 1:
            raise ConfigError(f"loss: temperature={temperature} must be > 0 and weight={weight} in [0, 1]")
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.weight = temperature, weight
        self.pixel_stats: tuple[float, float] | None = None

    def prepare(self, device: torch.device, datamodule: EMNISTDataModule) -> None:
        super().prepare(device, datamodule)
        self.teacher.to(device)
        self.pixel_stats = (float(datamodule.mean), float(datamodule.std))

    def soft_loss(self, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.pixel_stats is None:
            raise RuntimeError("DistilledLoss.prepare() was not called before training")
        mean, std = self.pixel_stats
        with torch.no_grad():
            teacher_logits = self.teacher(images * std + mean)
        t = self.temperature
        student = F.log_softmax(student_logits.float() / t, dim=1)
        teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
        return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * t * t

    def __call__(self, logits: torch.Tensor, targets: Targets, images: torch.Tensor) -> torch.Tensor:
        hard = super().__call__(logits, targets, images)
        return (1 - self.weight) * hard + self.weight * self.soft_loss(logits, images)
