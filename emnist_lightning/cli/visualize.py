"""`python -m emnist_lightning.cli.visualize data [overrides]` (or `emnist-visualize data`): pictures of the
dataset (conf/visualize.yaml).

Writes, in outputs/visualize/runs/<time>/ and its TensorBoard log: random samples of every class,
the class distribution of train / val / test, and the mean image of every class.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from emnist_lightning.errors import ConfigError
from emnist_lightning.pictures.dataset_figures import write_dataset_figures
from emnist_lightning.pictures.sink import FigureSink, tensorboard_images
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point
from emnist_lightning.training.build import build_datamodule

SUBCOMMANDS = {"data": "pictures of the dataset: samples per class, class distribution, mean images"}


def visualize_data(cfg: DictConfig, context: RunContext) -> None:
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup()
    with SummaryWriter(str(context.output_dir / "tensorboard")) as writer:
        sink = FigureSink(context.output_dir, [tensorboard_images(writer)])
        paths = write_dataset_figures(datamodule, sink, cfg.samples_per_class, cfg.seed)
    print("wrote " + ", ".join(str(path) for path in paths))


def subcommand_arguments(arguments: list[str]) -> list[str]:
    """The Hydra overrides after the subcommand, which must come first."""
    if not arguments or arguments[0] not in SUBCOMMANDS:
        choices = "; ".join(f"{name}: {what}" for name, what in SUBCOMMANDS.items())
        raise ConfigError(f"usage: emnist-visualize {{{','.join(SUBCOMMANDS)}}} [overrides] ({choices})")
    return arguments[1:]


def main() -> None:
    run_entry_point("visualize", visualize_data, prepare_arguments=subcommand_arguments)


if __name__ == "__main__":
    main()
