"""`python evaluate.py ckpt_path=...`: test any checkpoint on the test split of `data.data_dir`
(conf/evaluate.yaml)."""

from __future__ import annotations

from omegaconf import DictConfig

from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point
from emnist_lightning.training.evaluation import evaluate


def evaluated_accuracy(cfg: DictConfig, context: RunContext) -> float | None:
    return evaluate(cfg, context).test_acc


def main() -> None:
    run_entry_point("evaluate", evaluated_accuracy)


if __name__ == "__main__":
    main()
