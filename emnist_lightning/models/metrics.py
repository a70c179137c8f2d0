"""The metrics of a run, defined once: accuracy, macro accuracy and the expected calibration error."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError
from torchmetrics.functional.classification import multiclass_calibration_error

CALIBRATION_BINS = 15  # confidence bins of the calibration error and the reliability diagram


# Labels are range-checked when the data is loaded. Validating them again in every update would
# cost a device sync per batch on a GPU (torch.unique, and a NaN check for the mean loss).
def accuracy_metrics(num_classes: int, prefix: str, calibration: bool = False) -> MetricCollection:
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
        "macro_acc": MulticlassAccuracy(num_classes, average="macro", validate_args=False),
    }
    if calibration:
        metrics["ece"] = expected_calibration_error(num_classes)
    return MetricCollection(metrics, prefix=prefix)


def calibration_metrics(num_classes: int, prefix: str, postfix: str) -> MetricCollection:
    """The calibration error alone, for the probabilities after temperature scaling (`postfix` names them)."""
    return MetricCollection({"ece": expected_calibration_error(num_classes)}, prefix=prefix, postfix=postfix)


def expected_calibration_error(num_classes: int) -> MulticlassCalibrationError:
    return MulticlassCalibrationError(num_classes, n_bins=CALIBRATION_BINS, norm="l1", validate_args=False)


def calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: mean |accuracy - confidence| over confidence bins, weighted by bin size."""
    return float(multiclass_calibration_error(probabilities, labels, probabilities.shape[1], n_bins=bins, norm="l1"))


def accuracies(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accuracy and macro accuracy from a confusion matrix (true class in rows), as MulticlassAccuracy
    computes them: the macro mean counts every class that occurs as a label or a prediction."""
    correct, labelled = confusion.diagonal(), confusion.sum(dim=1)
    occurs = (labelled + confusion.sum(dim=0)) > 0
    recall = correct / labelled.clamp(min=1)
    return {"acc": correct.sum() / confusion.sum(), "macro_acc": recall[occurs].mean()}
