"""Pictures of a dataset: random samples of every class, the class distribution of train / val / test,
and the mean image of every class."""

from __future__ import annotations

from pathlib import Path

from emnist_lightning.atomic import write_atomically
from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.pictures import figure_data, plots
from emnist_lightning.pictures.sink import FigureSink


def write_dataset_figures(datamodule: EMNISTDataModule, sink: FigureSink, per_class: int, seed: int) -> list[Path]:
    """class_counts.csv and the three pictures of a set-up data module; returns the files written."""
    train, classes = datamodule.train_set, datamodule.classes
    splits = {"train": train.labels, "val": datamodule.val_set.labels, "test": datamodule.test_set.labels}
    counts = figure_data.class_counts(splits, classes)
    table = sink.output_dir / "class_counts.csv"
    write_atomically(table, counts.to_csv(index=False))
    samples = figure_data.samples_per_class(train.images, train.labels, per_class, len(classes), seed)
    means = figure_data.mean_per_class(train.images, train.labels, len(classes))
    return [
        table,
        *sink.publish(
            [
                sink.job(
                    "dataset_samples.png", "data/dataset_samples", plots.class_samples_figure, samples, list(classes)
                ),
                sink.job("class_distribution.png", "data/class_distribution", plots.class_distribution_figure, counts),
                sink.job("mean_images.png", "data/mean_images", plots.mean_images_figure, means, list(classes)),
            ]
        ),
    ]
