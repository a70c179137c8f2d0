"""A test pass's predictions turned into files and TensorBoard images: confusion matrices,
per-class metrics, confused pairs, galleries and a reliability diagram.

`write_test_report` is a plain function of the predictions, so it runs (and is tested) without a Trainer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.tensorboard import SummaryWriter

from emnist_lightning.pictures import analysis, plots
from emnist_lightning.runs import timing

PREDICTION_GRID_SIZE = 48


@dataclass
class TestOutputs:
    """Everything a test pass produced, on the CPU: class probabilities, true labels, and the
    (N, 28, 28) images as the model saw them."""

    probabilities: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor

    # Cached: the galleries and pair examples read these many times.
    @cached_property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(dim=1)

    @cached_property
    def confidence(self) -> torch.Tensor:
        return self.probabilities.max(dim=1).values


@dataclass(frozen=True)
class TestReportSettings:
    hide_diagonal: bool = True  # the row-normalised matrix hides correct predictions so confusions stand out
    top_pairs: int = 10
    examples_per_pair: int = 8
    gallery_size: int = 40
    calibration_bins: int = 15


@dataclass
class FigureSink:
    """Where figures go: PNGs in a folder and images in TensorBoard writers, at one step.

    Each picture's time (runs/timing.py) runs from the sink's creation or the previous picture to this one's
    files: the numbers, the figure and the writing that made it."""

    output_dir: Path
    writers: Sequence[SummaryWriter] = ()
    step: int = 0
    since: float = field(default_factory=time.perf_counter)

    def publish(self, fig, name: str, tag: str) -> Path:
        path = self.output_dir / name
        plots.save_figure(fig, path, self.writers, tag, self.step)
        now = time.perf_counter()
        timing.pictures[name] = round(now - self.since, 3)
        self.since = now
        return path


def write_test_report(
    outputs: TestOutputs, classes: Sequence[str], sink: FigureSink, settings: TestReportSettings = TestReportSettings()
) -> list[Path]:
    """Write the CSV tables and figures of a test pass; returns the files written."""
    confusion = analysis.confusion_matrix(outputs.predictions, outputs.labels, len(classes))
    return [
        *confusion_files(confusion, classes, sink, settings.hide_diagonal),
        *per_class_files(outputs, classes, sink),
        *confused_pair_files(outputs, confusion, classes, sink, settings),
        *gallery_files(outputs, classes, sink, settings.gallery_size),
        reliability_file(outputs, sink, settings.calibration_bins),
    ]


def confusion_files(confusion: np.ndarray, classes: Sequence[str], sink: FigureSink, hide_diagonal: bool) -> list[Path]:
    csv = sink.output_dir / "confusion_matrix.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(csv, confusion, fmt="%d", delimiter=",")
    counts = plots.confusion_matrix_figure(confusion, classes, title="Confusion matrix (test, counts)")
    counts_png = sink.publish(counts, "confusion_matrix.png", "test/confusion_matrix")
    title = "Confusion matrix (test, fraction of each true class" + (", diagonal hidden)" if hide_diagonal else ")")
    fractions = plots.confusion_matrix_figure(
        confusion, classes, normalize=True, hide_diagonal=hide_diagonal, title=title
    )
    return [
        csv,
        counts_png,
        sink.publish(fractions, "confusion_matrix_normalized.png", "test/confusion_matrix_normalized"),
    ]


def per_class_files(outputs: TestOutputs, classes: Sequence[str], sink: FigureSink) -> list[Path]:
    table = analysis.per_class_metrics(outputs.probabilities, outputs.labels, classes)
    csv = sink.output_dir / "per_class_metrics.csv"
    table.sort_values("f1").to_csv(csv, index=False, float_format="%.4f")
    return [csv, sink.publish(plots.per_class_metrics_figure(table), "per_class_metrics.png", "test/per_class")]


def confused_pair_files(
    outputs: TestOutputs, confusion: np.ndarray, classes: Sequence[str], sink: FigureSink, settings: TestReportSettings
) -> list[Path]:
    pairs = analysis.most_confused_pairs(confusion, settings.top_pairs)
    rows = [{"true": classes[t], "predicted": classes[p], "count": n} for t, p, n in pairs]
    csv = sink.output_dir / "confused_pairs.csv"
    pd.DataFrame(rows, columns=["true", "predicted", "count"]).to_csv(csv, index=False)
    examples = [
        (classes[t], classes[p], n, outputs.images[(outputs.labels == t) & (outputs.predictions == p)].numpy())
        for t, p, n in pairs
    ]
    fig = plots.confused_pairs_figure(examples, settings.examples_per_pair)
    return [csv, sink.publish(fig, "confused_pairs.png", "test/confused_pairs")]


def gallery_files(outputs: TestOutputs, classes: Sequence[str], sink: FigureSink, gallery_size: int) -> list[Path]:
    first = slice(0, PREDICTION_GRID_SIZE)  # slicing stops at the end of a shorter test set
    grid = plots.prediction_grid_figure(
        outputs.images[first].numpy(), outputs.labels[first].numpy(), outputs.predictions[first].numpy(), classes
    )
    grid_png = sink.publish(grid, "test_predictions.png", "test/predictions")
    wrong = (outputs.predictions != outputs.labels).nonzero().squeeze(1)
    wrong = wrong[outputs.confidence[wrong].argsort(descending=True)][:gallery_size]
    captions = [
        f"{classes[outputs.labels[i]]} → {classes[outputs.predictions[i]]} {outputs.confidence[i]:.0%}"
        for i in wrong.tolist()
    ]
    mistakes = plots.image_grid_figure(
        outputs.images[wrong].numpy(),
        captions,
        columns=10,
        caption_colors=["crimson"] * len(captions),
        title="Most confident mistakes (true → predicted, confidence)",
    )
    return [grid_png, sink.publish(mistakes, "misclassified.png", "test/misclassified")]


def reliability_file(outputs: TestOutputs, sink: FigureSink, bins: int) -> Path:
    ece = analysis.expected_calibration_error(outputs.probabilities, outputs.labels, bins)
    correct = (outputs.predictions == outputs.labels).numpy()
    fig = plots.reliability_figure(outputs.confidence.numpy(), correct, bins, ece)
    return sink.publish(fig, "reliability.png", "test/reliability")
