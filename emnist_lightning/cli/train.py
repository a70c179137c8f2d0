"""`python train.py [overrides]`: train one configuration, then test its best checkpoint (conf/train.yaml)."""

from __future__ import annotations

from omegaconf import DictConfig

from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.resume import resume_arguments
from emnist_lightning.runs.task import run_entry_point
from emnist_lightning.training.run import train


def validation_accuracy(cfg: DictConfig, context: RunContext) -> float | None:
    """The run's best validation accuracy: what a multirun's sweeper (Optuna) maximises."""
    return train(cfg, context).val_acc


def main() -> None:
    run_entry_point("train", validation_accuracy, prepare_arguments=resume_arguments)


if __name__ == "__main__":
    main()
