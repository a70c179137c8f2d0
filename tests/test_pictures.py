"""Pictures of the data and the models: valid PNGs whose numbers agree with the data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from emnist_lightning.models.metrics import calibration_error
from emnist_lightning.pictures import evaluation_figures, figure_data, plots
from emnist_lightning.pictures.sink import FigureSink, tensorboard_images
from tests.conftest import BALANCED, configured_settings, run_entry_point

TEST_IMAGES = 47 * 6  # the synthetic test split
RUN_PICTURES = {
    "dataset_samples.png": "data/samples",
    "confusion_matrix.png": "test/confusion_matrix",
    "confusion_matrix_normalized.png": "test/confusion_matrix_normalized",
    "per_class_metrics.png": "test/per_class",
    "confused_pairs.png": "test/confused_pairs",
    "misclassified.png": "test/misclassified",
    "reliability.png": "test/reliability",
    "test_predictions.png": "test/predictions",
}
MODEL_PICTURES = {
    "cnn": {"model_filters.png": "model/filters", "feature_maps.png": "model/feature_maps"},
    "mlp": {"model_first_layer.png": "model/first_layer"},
}


def assert_sensible_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width >= 300 and height >= 150, f"{path.name} is {width}x{height}"


def test_samples_per_class_takes_each_class() -> None:
    labels = torch.arange(3).repeat_interleave(5)
    images = labels.view(-1, 1, 1, 1).expand(-1, 1, 28, 28).to(torch.uint8)
    grid = figure_data.samples_per_class(images, labels, per_class=4, num_classes=3)
    assert grid.shape == (3, 4, 28, 28)
    for label in range(3):
        assert (grid[label] == label).all()


def test_mean_per_class() -> None:
    images = torch.tensor([0.0, 2.0, 10.0]).view(3, 1, 1, 1).expand(3, 1, 28, 28)
    means = figure_data.mean_per_class(images, torch.tensor([0, 0, 1]), num_classes=2)
    assert means[0].mean() == pytest.approx(1.0) and means[1].mean() == pytest.approx(10.0)


def test_most_confused_pairs_are_ordered_by_count() -> None:
    confusion = np.array([[50, 3, 9], [1, 40, 0], [4, 7, 30]])
    assert figure_data.most_confused_pairs(confusion, top=3) == [(0, 2, 9), (2, 1, 7), (2, 0, 4)]
    assert figure_data.most_confused_pairs(np.eye(3, dtype=int), top=5) == []


def test_per_class_metrics_match_counts() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    probabilities = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1]), 2).float()
    table = figure_data.per_class_metrics(probabilities, labels, ["a", "b"])
    assert table["accuracy"].tolist() == [0.5, 1.0]
    assert table["precision"].tolist() == pytest.approx([1.0, 2 / 3])
    assert table["images"].tolist() == [2, 2]


def test_calibration_error_of_confident_mistakes() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    assert calibration_error(probabilities, torch.tensor([0, 1]), bins=10) == pytest.approx(0.4)


def synthetic_test_outputs(
    classes: int = 47, per_class: int = 5, seed: int = 0
) -> evaluation_figures.EvaluationOutputs:
    """Predictions of a fake model that is right about 70% of the time."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat(per_class)
    logits = torch.randn(len(labels), classes, generator=generator)
    right = torch.rand(len(labels), generator=generator) < 0.7
    logits[right, labels[right]] += 6
    return evaluation_figures.EvaluationOutputs(
        logits.softmax(dim=1), labels, torch.rand(len(labels), 28, 28, generator=generator)
    )


def test_write_evaluation_figures_without_a_trainer(tmp_path: Path) -> None:
    outputs = synthetic_test_outputs()
    settings = evaluation_figures.EvaluationFigureSettings(**configured_settings("callbacks.test_diagnostics"))
    with SummaryWriter(str(tmp_path / "tensorboard")) as writer:
        written = evaluation_figures.write_evaluation_figures(
            outputs, BALANCED.classes, FigureSink(tmp_path, [tensorboard_images(writer)]), settings
        )
    pictures = {name: tag for name, tag in RUN_PICTURES.items() if tag.startswith("test/")}
    assert {path.name for path in written} == set(pictures) | {
        "confusion_matrix.csv",
        "per_class_metrics.csv",
        "confused_pairs.csv",
    }
    for name in pictures:
        assert_sensible_png(tmp_path / name)
    confusion = np.loadtxt(tmp_path / "confusion_matrix.csv", delimiter=",")
    assert confusion.sum() == len(outputs.labels)
    assert np.trace(confusion) == (outputs.predictions == outputs.labels).sum().item()
    per_class = pd.read_csv(tmp_path / "per_class_metrics.csv")
    assert len(per_class) == 47 and (per_class["images"] == 5).all()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert set(pictures.values()) == set(events.Tags()["images"])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_run_draws_every_picture(family: str, synthetic_dir: Path, tmp_path: Path) -> None:
    overrides = {"cnn": ["model.channels=[8,16]", "model.head_dims=[32]"], "mlp": ["model.hidden_dims=[64,64,64]"]}
    result = run_entry_point(
        "train.py",
        f"model={family}",
        *overrides[family],
        f"data.data_dir={synthetic_dir}",
        f"hydra.run.dir={tmp_path}",
        "trainer.max_epochs=2",
        "callbacks.progress_bar=null",
        "callbacks.parameter_histograms.enabled=true",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pictures = RUN_PICTURES | MODEL_PICTURES[family]
    for name in pictures:
        assert_sensible_png(tmp_path / name)

    confusion = np.loadtxt(tmp_path / "confusion_matrix.csv", delimiter=",")
    assert confusion.shape == (47, 47) and confusion.sum() == TEST_IMAGES
    pairs = pd.read_csv(tmp_path / "confused_pairs.csv")
    assert pairs["count"].is_monotonic_decreasing
    for row in pairs.itertuples():
        assert confusion[BALANCED.classes.index(row.true), BALANCED.classes.index(row.predicted)] == row.count
    per_class = pd.read_csv(tmp_path / "per_class_metrics.csv")
    assert len(per_class) == 47 and per_class["images"].sum() == TEST_IMAGES
    assert per_class["f1"].is_monotonic_increasing
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test_ece"] <= 1.0

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    assert set(pictures.values()) <= set(events.Tags()["images"])
    histograms = events.Tags()["histograms"]
    assert any(tag.startswith("weights/") for tag in histograms)
    assert any(tag.startswith("gradients/") for tag in histograms)


@pytest.mark.slow
def test_visualize_data(synthetic_dir: Path, tmp_path: Path) -> None:
    result = run_entry_point(
        "emnist_lightning.cli.visualize", "data", f"data.data_dir={synthetic_dir}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("dataset_samples.png", "class_distribution.png", "mean_images.png"):
        assert_sensible_png(tmp_path / name)
    counts = pd.read_csv(tmp_path / "class_counts.csv")
    assert counts.groupby("split")["images"].sum().to_dict() == {"train": 47 * 22, "val": 47 * 2, "test": 47 * 6}
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"data/dataset_samples", "data/class_distribution", "data/mean_images"} <= set(events.Tags()["images"])


def test_visualize_without_subcommand_explains_usage() -> None:
    result = run_entry_point("emnist_lightning.cli.visualize")
    assert result.returncode == 1 and "usage: emnist-visualize {data}" in result.stderr


def test_image_grids_of_nothing_still_draw(tmp_path: Path) -> None:
    """A model that made no mistakes leaves the mistakes gallery empty; the picture is still written."""
    plots.save_figure(plots.image_grid_figure(np.zeros((0, 28, 28)), [], title="none"), tmp_path / "empty.png")
    plots.save_figure(plots.confused_pairs_figure([]), tmp_path / "no_pairs.png")
    assert_sensible_png(tmp_path / "empty.png")
    assert_sensible_png(tmp_path / "no_pairs.png")


def test_drawing_leaves_the_callers_matplotlib_alone(tmp_path: Path) -> None:
    """A notebook or program that imports the package keeps its backend and its pyplot figures: the
    package's figures are drawn off pyplot."""
    script = f"""
import matplotlib
matplotlib.use("svg")
from matplotlib import pyplot
import pandas as pd
from pathlib import Path
from emnist_lightning.pictures import plots
counts = pd.DataFrame({{"class": ["a", "b", "a"], "split": ["train", "train", "test"], "images": [3, 5, 1]}})
plots.save_figure(plots.class_distribution_figure(counts), Path({str(tmp_path / "counts.png")!r}))
print(matplotlib.get_backend(), pyplot.get_fignums())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["svg", "[]"]
    assert_sensible_png(tmp_path / "counts.png")
