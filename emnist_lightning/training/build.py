"""From a composed config to the objects of a run: data module, model, callbacks, loggers, trainer."""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.plugins import TorchCheckpointIO
from omegaconf import DictConfig

from emnist_lightning.atomic import replaced_atomically
from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.models import load_pixel_model
from emnist_lightning.models import EMNISTClassifier
from emnist_lightning.models.pretrained import resolve_models
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.host import resolved_precision
from emnist_lightning.training.callbacks import (
    EpochTimer,
    GracefulStop,
    LapClock,
    MetricHistory,
    PredictionsKeeper,
    RandomState,
    Stopwatch,
    TemperatureFit,
)

MAX_TEST_TIME_SHIFT = 2  # pixels: a larger shift moves ink out of EMNIST's blank border

if TYPE_CHECKING:
    from emnist_lightning.search.pruning import TrialReport

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig, **overrides: Any) -> EMNISTDataModule:
    augment = cfg.get("augment")  # training batches only; evaluate.py composes none
    return instantiate(cfg.data, augment=instantiate(augment) if augment else None, **overrides)


def read_test_time_shift(cfg: DictConfig) -> int:
    """test_time_shift= of train.py and evaluate.py: the whole-pixel shifts whose mean prediction the test uses."""
    shift = cfg.test_time_shift  # train.yaml and evaluate.yaml both set it: no default here
    if not isinstance(shift, int) or not 0 <= shift <= MAX_TEST_TIME_SHIFT:
        raise ConfigError(
            f"test_time_shift={shift} must be a whole number of pixels from 0 (off) to {MAX_TEST_TIME_SHIFT}: "
            "larger shifts move ink out of EMNIST's blank border"
        )
    return shift


def build_model(cfg: DictConfig, datamodule: EMNISTDataModule) -> EMNISTClassifier:
    """The configured classifier, with one output per class of the data module's split."""
    # Objects are passed after instantiation: Hydra would turn a dataclass kwarg into a dict.
    model_factory = instantiate(cfg.model, _partial_=True, _convert_="all")
    return model_factory(
        split=datamodule.split.name,
        classes=datamodule.classes,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        loss=build_loss(cfg, datamodule),
        penalty=instantiate(cfg.regularization),
        mixing=instantiate(cfg.mixing) if cfg.get("mixing") else None,
    )


def build_loss(cfg: DictConfig, datamodule: EMNISTDataModule) -> Any:
    """The training loss of conf/loss/; a loss that takes a teacher (loss=distilled) gets it loaded."""
    if "teacher" not in cfg.loss:
        return instantiate(cfg.loss)
    return instantiate(cfg.loss, teacher=load_teacher(cfg.loss.teacher, datamodule, cfg.pretrained_dir))


def load_teacher(spec: Any, datamodule: EMNISTDataModule, pretrained_dir: str) -> Any:
    """A checkpoint, several (their ensemble teaches), or a published model such as pretrained:balanced."""
    if not spec:
        raise ConfigError("loss=distilled needs loss.teacher= a checkpoint (or [a.ckpt,b.ckpt])")
    teacher = load_pixel_model(resolve_models(spec, pretrained_dir))
    if tuple(teacher.classes) != tuple(datamodule.classes):
        raise ConfigError(
            f"the teacher names {len(teacher.classes)} classes of EMNIST {teacher.split}, the data "
            f"{datamodule.num_classes} of {datamodule.split.name}: distil from a teacher of the same split"
        )
    return teacher


def build_entries(group: DictConfig | None) -> list:
    """Instantiate every non-null entry of a group of objects, `callbacks` or `logger` (null switches one
    off, and so does a factory that returns None, such as early stopping without a patience)."""
    built = (instantiate(node) for node in (group or {}).values() if node is not None)
    return [entry for entry in built if entry is not None]


@dataclass
class TrainingCallbacks:
    """The callbacks of a training run: metrics.json's history and timer, then the configured ones."""

    history: MetricHistory
    timer: EpochTimer
    predictions: PredictionsKeeper
    trial: TrialReport | None  # a trial of an Optuna search reports its epochs to the study
    temperature: TemperatureFit | None  # after training, on validation (temperature_scaling=true)
    all: list[L.Callback]


def build_training_callbacks(cfg: DictConfig, context: RunContext, stopwatch: Stopwatch) -> TrainingCallbacks:
    history, timer, predictions = MetricHistory(), EpochTimer(), PredictionsKeeper(context.output_dir, cfg.seed)
    # The timer runs first, so a pass's time excludes the figures other callbacks draw after it.
    bookkeeping = [timer, history, predictions, LapClock(stopwatch), RandomState(), GracefulStop(context.stop_requests)]
    averaging = [instantiate(cfg.weight_averaging)] if cfg.get("weight_averaging") else []
    trial = None
    search = cfg.get("search")
    if search is not None and search.get("trial") is not None:
        from emnist_lightning.search.pruning import TrialReport  # Optuna is imported by search trials only

        trial = TrialReport(search, pruner=HydraConfig.get().sweeper.get("pruner"))
    temperature = TemperatureFit() if cfg.get("temperature_scaling") else None
    configured = build_entries(cfg.get("callbacks"))
    optional = [callback for callback in (trial, temperature) if callback is not None]
    return TrainingCallbacks(
        history, timer, predictions, trial, temperature, [*bookkeeping, *averaging, *optional, *configured]
    )


def require_tracker(module: str, choice: str) -> None:
    """A tracker's package is an extra: without it, one line saying how to install it."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{choice} needs {module}: pip install 'emnist-lightning[trackers]' (or make install-dev)")


def wandb_logger(**settings: Any) -> L.pytorch.loggers.Logger:
    """Lightning's WandbLogger (conf/logger/wandb.yaml)."""
    from lightning.pytorch.loggers import WandbLogger

    require_tracker("wandb", "logger=wandb")
    return WandbLogger(**settings)


def mlflow_logger(tracking_uri: str, **settings: Any) -> L.pytorch.loggers.Logger:
    """Lightning's MLFlowLogger (conf/logger/mlflow.yaml). MLflow 3 refuses a local file store unless it is
    asked for; that store is the one that needs no server and no database driver, so it is allowed."""
    from lightning.pytorch.loggers import MLFlowLogger

    require_tracker("mlflow", "logger=mlflow")
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(tracking_uri=tracking_uri, **settings)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside it, then renames it into place, so a process killed
    mid-write leaves the previous checkpoint whole (a rename within a folder is atomic)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path, durable=True) as file:  # a full disk or a kill: the previous one stays
            torch.save(checkpoint, file)


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback]) -> L.Trainer:
    """The configured Trainer with these callbacks, the run's loggers and atomic checkpoint writes."""
    # The callbacks group alone decides the progress bar: without one Lightning would add its tqdm bar.
    no_bar = {} if any(isinstance(callback, ProgressBar) for callback in callbacks) else {"enable_progress_bar": False}
    precision = resolved_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    if precision != cfg.trainer.precision:
        log.info("trainer.precision=%s: %s on this hardware", cfg.trainer.precision, precision)
    return instantiate(
        cfg.trainer,
        precision=precision,
        callbacks=callbacks,
        logger=build_entries(cfg.get("logger")),
        plugins=[AtomicCheckpointIO()],
        **no_bar,
    )
