"""A run's test predictions, kept beside its metrics.json so that two runs can be compared image by image."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emnist_lightning.analysis.statistics import Interval, macro_accuracy, macro_accuracy_interval, wilson_interval
from emnist_lightning.atomic import replaced_atomically
from emnist_lightning.errors import DataError

PREDICTIONS_FILE = "test_predictions.npz"


@dataclass(frozen=True)
class HeldOutPredictions:
    """The true and predicted class of every test image, in the test files' order."""

    __test__ = False  # not a pytest test class, despite its name

    labels: np.ndarray
    predictions: np.ndarray
    classes: tuple[str, ...]

    @property
    def correct(self) -> np.ndarray:
        return self.labels == self.predictions

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def macro_accuracy(self) -> float:
        return macro_accuracy(self.labels, self.predictions, len(self.classes))

    def intervals(self, seed: int) -> dict[str, list[float]]:
        """95% intervals of test accuracy (Wilson) and macro accuracy (bootstrap over images), as
        metrics.json holds them."""
        accuracy: Interval = wilson_interval(int(self.correct.sum()), len(self.labels))
        macro = macro_accuracy_interval(self.labels, self.predictions, len(self.classes), seed)
        return {"test_acc_ci": accuracy.as_list(), "test_macro_acc_ci": macro.as_list()}

    def save(self, directory: Path) -> Path:
        path = directory / PREDICTIONS_FILE
        directory.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as file:
            np.savez_compressed(
                file,
                labels=self.labels.astype(np.uint8),
                predictions=self.predictions.astype(np.uint8),
                classes=np.array(self.classes),
            )
        return path

    @classmethod
    def load(cls, directory: Path) -> HeldOutPredictions:
        path = directory / PREDICTIONS_FILE
        try:
            with np.load(path, allow_pickle=False) as stored:
                labels, predictions = stored["labels"].astype(np.int64), stored["predictions"].astype(np.int64)
                classes = tuple(str(name) for name in stored["classes"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(
                f"{path} is missing or unreadable ({type(err).__name__}); runs write it when they test (rerun "
                "the run, or evaluate its checkpoint with evaluate.py)"
            ) from err
        return cls(labels, predictions, classes)
