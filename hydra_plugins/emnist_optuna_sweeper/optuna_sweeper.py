"""Hydra finds sweepers only in the hydra_plugins namespace: this class hands the work to
emnist_lightning.search, imported when a search starts (Hydra imports every plugin module on every run)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class EmnistOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from emnist_lightning.runs.task import user_errors_end_the_process
        from emnist_lightning.search.sweeper import OptunaSearch

        with user_errors_end_the_process():
            self.search = OptunaSearch(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from emnist_lightning.runs.task import user_errors_end_the_process

        with user_errors_end_the_process():
            self.search.setup(hydra_context, task_function, config)

    def sweep(self, arguments: list[str]) -> Any:
        from emnist_lightning.runs.task import user_errors_end_the_process

        with user_errors_end_the_process():
            return self.search.sweep(arguments)
