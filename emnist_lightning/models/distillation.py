"""Knowledge distillation (Hinton et al., 2015): the student learns from a teacher's softened probabilities
as well as from the labels, so a study can tell how much of the gap between two families is the
architecture and how much the training signal."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from emnist_lightning.errors import ConfigError


@dataclass
class Distillation:
    """The loss `(1 - weight) * CE(labels) + weight * T^2 * KL(teacher_T || student_T)`, where `_T` is a
    softmax at temperature T (the T^2 keeps the soft term's gradients on the scale of the hard one's).

    `teacher` maps raw pixels in [0, 1] to logits (a checkpoint's pixel classifier, or an ensemble's), so it
    applies its own normalisation; the student's batches are turned back into pixels with the data module's
    statistics (`pixel_stats`, set when fitting starts). A plain attribute, not a submodule: the teacher's
    weights stay out of the student's checkpoint."""

    teacher: nn.Module
    temperature: float = 4.0
    weight: float = 0.9
    pixel_stats: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 <= self.weight <= 1:
            raise ConfigError(
                f"loss.distillation: temperature={self.temperature} must be > 0 and weight={self.weight} in [0, 1]"
            )
        self.teacher.eval().requires_grad_(False)

    def prepare(self, device: torch.device, mean: float, std: float) -> None:
        self.teacher.to(device)
        self.pixel_stats = (mean, std)

    def soft_loss(self, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.pixel_stats is None:
            raise RuntimeError("Distillation.prepare() was not called before training")
        mean, std = self.pixel_stats
        with torch.no_grad():
            teacher_logits = self.teacher(images * std + mean)
        t = self.temperature
        student = F.log_softmax(student_logits.float() / t, dim=1)
        teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
        return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * t * t

    def loss(self, hard_loss: torch.Tensor, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return (1 - self.weight) * hard_loss + self.weight * self.soft_loss(student_logits, images)
