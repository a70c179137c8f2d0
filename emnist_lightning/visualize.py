"""`python -m emnist_lightning.visualize data [overrides]`: pictures of the dataset.

Writes, in outputs/visualize/runs/<time>/ and its TensorBoard log: random samples of every class,
the class distribution of train / val / test, and the mean image of every class.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.pictures import analysis, plots
from emnist_lightning.pictures.painter import shared_painter
from emnist_lightning.pictures.sink import FigureSink
from emnist_lightning.runs.build import build_datamodule
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point

SUBCOMMANDS = {"data": "pictures of the dataset: samples per class, class distribution, mean images"}


def draw_dataset(
    datamodule: EMNISTDataModule, output_dir: Path, writer: SummaryWriter, per_class: int, seed: int
) -> list[Path]:
    train, classes = datamodule.train_set, datamodule.classes
    splits = {"train": train.labels, "val": datamodule.val_set.labels, "test": datamodule.test_set.labels}
    counts = analysis.class_counts(splits, classes)
    counts.to_csv(output_dir / "class_counts.csv", index=False)
    samples = analysis.samples_per_class(train.images, train.labels, per_class, len(classes), seed)
    means = analysis.mean_per_class(train.images, train.labels, len(classes))
    sink = FigureSink(output_dir, [writer])
    return sink.publish(
        [
            sink.job("dataset_samples.png", "data/dataset_samples", plots.class_samples_figure, samples, list(classes)),
            sink.job("class_distribution.png", "data/class_distribution", plots.class_distribution_figure, counts),
            sink.job("mean_images.png", "data/mean_images", plots.mean_images_figure, means, list(classes)),
        ]
    )


def visualize_data(cfg: DictConfig, context: RunContext) -> None:
    shared_painter()  # the picture helper imports its modules while this process loads the data
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup()
    output_dir = context.output_dir
    with SummaryWriter(str(output_dir / "tensorboard")) as writer:
        paths = draw_dataset(datamodule, output_dir, writer, cfg.samples_per_class, cfg.seed)
    print("wrote " + ", ".join(str(path) for path in paths))


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in SUBCOMMANDS:
        choices = "\n".join(f"  {name:6s} {what}" for name, what in SUBCOMMANDS.items())
        raise SystemExit(
            f"usage: python -m emnist_lightning.visualize {{{','.join(SUBCOMMANDS)}}} [overrides]\n{choices}"
        )
    sys.argv.pop(1)  # the rest are Hydra overrides
    run_entry_point("visualize", visualize_data)


if __name__ == "__main__":
    main()
