"""From a composed config to the objects of a run: data module, model, callbacks, loggers, trainer."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.models import EMNISTClassifier
from emnist_lightning.runs.callbacks import EpochTimer, MetricHistory


def build_datamodule(cfg: DictConfig) -> EMNISTDataModule:
    return instantiate(cfg.data)


def build_model(cfg: DictConfig) -> EMNISTClassifier:
    # Objects are passed after instantiation: Hydra would turn a dataclass kwarg into a dict.
    model_factory = instantiate(cfg.model, _partial_=True, _convert_="all")
    return model_factory(
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        l1=cfg.regularization.l1,
        l2=cfg.regularization.l2,
    )


def build_entries(group: DictConfig | None) -> list:
    """Instantiate every non-null entry of a group of objects, `callbacks` or `logger` (null switches one off)."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


@dataclass
class TrainingCallbacks:
    """The callbacks of a training run: metrics.json's history and timer, then the configured ones."""

    history: MetricHistory
    timer: EpochTimer
    all: list[L.Callback]


def build_training_callbacks(cfg: DictConfig) -> TrainingCallbacks:
    history, timer = MetricHistory(), EpochTimer()
    # The timer runs first, so a pass's time excludes the figures other callbacks draw after it.
    return TrainingCallbacks(history, timer, [timer, history, *build_entries(cfg.get("callbacks"))])


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback]) -> L.Trainer:
    # The callbacks group alone decides the progress bar: without one Lightning would add its tqdm bar.
    no_bar = {} if any(isinstance(callback, ProgressBar) for callback in callbacks) else {"enable_progress_bar": False}
    return instantiate(cfg.trainer, callbacks=callbacks, logger=build_entries(cfg.get("logger")), **no_bar)
