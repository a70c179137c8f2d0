"""`python train.py [overrides]`: train one configuration, then test its best checkpoint (conf/train.yaml)."""

from __future__ import annotations

from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError
from emnist_lightning.overrides import override_value
from emnist_lightning.runs.config import as_multirun, is_multirun
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.resume import resume_arguments
from emnist_lightning.runs.task import run_entry_point
from emnist_lightning.training.run import train


def validation_accuracy(cfg: DictConfig, context: RunContext) -> float | None:
    """The run's best validation accuracy: what a multirun's sweeper (Optuna) maximises."""
    return train(cfg, context).val_acc


def repeats_as_seeds(arguments: list[str]) -> list[str]:
    """`-m ... repeats=N` is `seed=range(1,N+1)`: every configuration of the sweep run with N seeds, which
    the report groups into one configuration with its mean, sd and interval."""
    repeats = override_value(arguments, "repeats")
    if repeats is None:
        return arguments
    if not is_multirun(arguments) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats={repeats} asks for N >= 1 seeds of a sweep: python train.py -m repeats=3 ...")
    if override_value(arguments, "seed") is not None:
        raise ConfigError("give repeats=N or seed=..., not both: repeats=3 is seed=1,2,3")
    return [argument for argument in arguments if not argument.startswith("repeats=")] + [
        f"seed=range(1,{repeats + 1})"
    ]


def main() -> None:
    run_entry_point(
        "train",
        validation_accuracy,
        prepare_arguments=lambda arguments: resume_arguments(repeats_as_seeds(as_multirun(arguments))),
    )


if __name__ == "__main__":
    main()
