"""The numbers behind the pictures: per-class samples and means, per-class metrics, confusions,
calibration. Plain tensors in, plain tensors/arrays/tables out, so each can be tested alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from emnist_lightning.data.datamodule import to_unit_range


def samples_per_class(
    images: torch.Tensor, labels: torch.Tensor, per_class: int, num_classes: int, seed: int = 0
) -> np.ndarray:
    """(num_classes, per_class, 28, 28) random images of each class (blank where a class has fewer)."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.zeros(num_classes, per_class, *images.shape[-2:], dtype=images.dtype)
    for label in range(num_classes):
        members = (labels == label).nonzero().squeeze(1)
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        grid[label, : len(chosen)] = images[chosen].reshape(len(chosen), *images.shape[-2:])
    return grid.numpy()


def augmented_views(images: np.ndarray, augment: torch.nn.Module, views: int, seed: int = 0) -> np.ndarray:
    """(N, 1 + views, 28, 28): each uint8 image, then `views` augmented copies of it in [0, 1]. Drawn
    from a forked random state, so a picture never changes what training draws."""
    originals = to_unit_range(torch.from_numpy(images)).unsqueeze(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        augmented = [augment(originals) for _ in range(views)]
    return torch.cat([originals, *augmented], dim=1).numpy()


def mean_per_class(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """(num_classes, 28, 28) average image of each class."""
    flat = images.reshape(len(images), -1).float()
    sums = torch.zeros(num_classes, flat.shape[1]).index_add_(0, labels, flat)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).unsqueeze(1)
    return (sums / counts).reshape(num_classes, *images.shape[-2:]).numpy()


def class_counts(splits: dict[str, torch.Tensor], classes: Sequence[str]) -> pd.DataFrame:
    """Long table (class, split, images) of how many images each split holds per class."""
    rows = []
    for split, labels in splits.items():
        for label, count in enumerate(torch.bincount(labels, minlength=len(classes)).tolist()):
            rows.append({"class": classes[label], "split": split, "images": count})
    return pd.DataFrame(rows)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts, true class in rows, predicted in columns."""
    return multiclass_confusion_matrix(predictions, labels, num_classes).numpy()


def per_class_metrics(probabilities: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> pd.DataFrame:
    """Accuracy (= recall), precision, recall and F1 of each class, with its test count."""
    n = len(classes)
    table = pd.DataFrame({"class": list(classes), "images": torch.bincount(labels, minlength=n).numpy()})
    for name, metric in (
        ("accuracy", multiclass_accuracy),
        ("precision", multiclass_precision),
        ("recall", multiclass_recall),
        ("f1", multiclass_f1_score),
    ):
        table[name] = metric(probabilities, labels, n, average=None).numpy()
    return table


def most_confused_pairs(confusion: np.ndarray, top: int) -> list[tuple[int, int, int]]:
    """(true, predicted, count) of the `top` largest off-diagonal cells, largest first."""
    off_diagonal = confusion.copy()
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(off_diagonal, axis=None, kind="stable")[::-1][:top]
    pairs = [
        (int(i), int(j), int(off_diagonal[i, j]))
        for i, j in zip(*np.unravel_index(order, confusion.shape), strict=True)
    ]
    return [pair for pair in pairs if pair[2] > 0]
