"""A test pass's predictions turned into files and TensorBoard images: confusion matrices,
per-class metrics, confused pairs, galleries and a reliability diagram.

`write_evaluation_figures` is a plain function of the predictions, so it runs (and is tested) without a Trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emnist_lightning.atomic import write_atomically
from emnist_lightning.models.metrics import CALIBRATION_BINS, calibration_error
from emnist_lightning.pictures import figure_data, plots
from emnist_lightning.pictures.sink import FigureJob, FigureSink

PREDICTION_GRID_SIZE = 48


@dataclass
class EvaluationOutputs:
    """Everything a test pass produced, on the CPU: class probabilities, true labels, and the
    (N, 28, 28) images as the model saw them."""

    probabilities: torch.Tensor  # calibrated: softmax of the logits divided by `temperature`
    labels: torch.Tensor
    images: torch.Tensor
    temperature: float = 1.0

    @cached_property
    def uncalibrated_probabilities(self) -> torch.Tensor:
        """The probabilities before temperature scaling: softmax(T * log p) undoes the division."""
        return (self.probabilities.double().log() * self.temperature).softmax(dim=1).float()

    # Cached: the galleries and pair examples read these many times.
    @cached_property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(dim=1)

    @cached_property
    def confidence(self) -> torch.Tensor:
        return self.probabilities.max(dim=1).values


@dataclass(frozen=True)
class EvaluationFigureSettings:
    """What the figures show; the values are conf/callbacks/default.yaml's (test_diagnostics)."""

    hide_diagonal: bool  # the row-normalised matrix hides correct predictions so confusions stand out
    top_pairs: int
    examples_per_pair: int
    gallery_size: int


def write_evaluation_figures(
    outputs: EvaluationOutputs, classes: Sequence[str], sink: FigureSink, settings: EvaluationFigureSettings
) -> list[Path]:
    """Write the CSV tables and figures of a test pass; returns the files written."""
    classes = list(classes)
    confusion = figure_data.confusion_matrix(outputs.predictions, outputs.labels, len(classes))
    sink.output_dir.mkdir(parents=True, exist_ok=True)
    written = [
        *confusion_files(confusion, classes, sink, settings.hide_diagonal),
        *per_class_files(outputs, classes, sink),
        *confused_pair_files(outputs, confusion, classes, sink, settings),
        *gallery_files(outputs, classes, sink, settings.gallery_size),
        reliability_file(outputs, sink),
    ]
    tables = [item for item in written if isinstance(item, Path)]
    return tables + sink.publish([item for item in written if isinstance(item, FigureJob)])


# What each part below returns: the tables it wrote and the jobs that draw its figures (drawn together).
Written = Path | FigureJob


def confusion_files(confusion: np.ndarray, classes: list[str], sink: FigureSink, hide_diagonal: bool) -> list[Written]:
    csv = sink.output_dir / "confusion_matrix.csv"
    np.savetxt(csv, confusion, fmt="%d", delimiter=",")
    title = "Confusion matrix (test, fraction of each true class" + (", diagonal hidden)" if hide_diagonal else ")")
    return [
        csv,
        sink.job(
            "confusion_matrix.png", "test/confusion_matrix", plots.confusion_matrix_figure,
            confusion, classes, title="Confusion matrix (test, counts)",
        ),
        sink.job(
            "confusion_matrix_normalized.png", "test/confusion_matrix_normalized", plots.confusion_matrix_figure,
            confusion, classes, normalize=True, hide_diagonal=hide_diagonal, title=title,
        ),
    ]  # fmt: skip


def per_class_files(outputs: EvaluationOutputs, classes: list[str], sink: FigureSink) -> list[Written]:
    table = figure_data.per_class_metrics(outputs.probabilities, outputs.labels, classes)
    csv = sink.output_dir / "per_class_metrics.csv"
    write_atomically(csv, table.sort_values("f1").to_csv(index=False, float_format="%.4f"))
    return [csv, sink.job("per_class_metrics.png", "test/per_class", plots.per_class_metrics_figure, table)]


def confused_pair_files(
    outputs: EvaluationOutputs,
    confusion: np.ndarray,
    classes: list[str],
    sink: FigureSink,
    settings: EvaluationFigureSettings,
) -> list[Written]:
    pairs = figure_data.most_confused_pairs(confusion, settings.top_pairs)
    rows = [{"true": classes[t], "predicted": classes[p], "count": n} for t, p, n in pairs]
    csv = sink.output_dir / "confused_pairs.csv"
    write_atomically(csv, pd.DataFrame(rows, columns=["true", "predicted", "count"]).to_csv(index=False))
    examples = [
        (classes[t], classes[p], n, outputs.images[(outputs.labels == t) & (outputs.predictions == p)].numpy())
        for t, p, n in pairs
    ]
    draw = plots.confused_pairs_figure
    return [csv, sink.job("confused_pairs.png", "test/confused_pairs", draw, examples, settings.examples_per_pair)]


def gallery_files(
    outputs: EvaluationOutputs, classes: list[str], sink: FigureSink, gallery_size: int
) -> list[FigureJob]:
    first = slice(0, PREDICTION_GRID_SIZE)  # slicing stops at the end of a shorter test set
    grid = sink.job(
        "test_predictions.png", "test/predictions", plots.prediction_grid_figure,
        outputs.images[first].numpy(), outputs.labels[first].numpy(), outputs.predictions[first].numpy(), classes,
    )  # fmt: skip
    wrong = (outputs.predictions != outputs.labels).nonzero().squeeze(1)
    wrong = wrong[outputs.confidence[wrong].argsort(descending=True)][:gallery_size]
    captions = [
        f"{classes[outputs.labels[i]]} → {classes[outputs.predictions[i]]} {outputs.confidence[i]:.0%}"
        for i in wrong.tolist()
    ]
    mistakes = sink.job(
        "misclassified.png", "test/misclassified", plots.image_grid_figure,
        outputs.images[wrong].numpy(), captions, columns=10, caption_colors=["crimson"] * len(captions),
        title="Most confident mistakes (true → predicted, confidence)",
    )  # fmt: skip
    return [grid, mistakes]


def reliability_file(outputs: EvaluationOutputs, sink: FigureSink) -> FigureJob:
    """The reliability diagram of what people are shown, beside the raw one when a temperature was fitted."""
    bins, correct = CALIBRATION_BINS, (outputs.predictions == outputs.labels).numpy()
    shown = plots.Reliability(
        outputs.confidence.numpy(), calibration_error(outputs.probabilities, outputs.labels, bins)
    )
    before = None
    if outputs.temperature != 1.0:
        raw = outputs.uncalibrated_probabilities
        before = plots.Reliability(raw.max(dim=1).values.numpy(), calibration_error(raw, outputs.labels, bins))
    title = "test/reliability"
    return sink.job(
        "reliability.png", title, plots.reliability_figure, correct, bins, shown, before, outputs.temperature
    )
