"""`python train.py [overrides]`: train one configuration, then test its best checkpoint."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from emnist_lightning import runs
from emnist_lightning.callbacks import EpochTimer, MetricHistory
from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.module import EMNISTClassifier

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig) -> EMNISTClassifier:
    # Objects are passed after instantiation: Hydra would turn a dataclass kwarg into a dict.
    model_factory = instantiate(cfg.model, _partial_=True, _convert_="all")
    return model_factory(
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        l1=cfg.regularization.l1,
        l2=cfg.regularization.l2,
    )


@dataclass
class TrainingCallbacks:
    """The callbacks of a training run: metrics.json's history and timer, then the configured ones."""

    history: MetricHistory
    timer: EpochTimer
    all: list[L.Callback]


def training_callbacks(cfg: DictConfig) -> TrainingCallbacks:
    history, timer = MetricHistory(), EpochTimer()
    # The timer runs first, so a pass's time excludes the figures other callbacks draw after it.
    return TrainingCallbacks(history, timer, [timer, history, *runs.build_callbacks(cfg.get("callbacks"))])


def stage_metrics(results: list[dict[str, float]], stage: str) -> dict[str, float]:
    """{'acc': ..., 'macro_acc': ..., 'loss': ...} from trainer.validate/test results."""
    prefix = f"{stage}/"
    return {key.removeprefix(prefix): float(value) for key, value in results[0].items() if key.startswith(prefix)}


def train(cfg: DictConfig) -> float:
    """Fit, then evaluate the best checkpoint on validation and test; returns best val accuracy."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule: EMNISTDataModule = instantiate(cfg.data)
    model = build_model(cfg)
    callbacks = training_callbacks(cfg)
    trainer = runs.build_trainer(cfg, callbacks.all)

    started_at = time.time()
    trainer.fit(model, datamodule=datamodule)
    fit_seconds = time.time() - started_at

    checkpoint = trainer.checkpoint_callback
    # Without a checkpoint callback (callbacks.model_checkpoint=null) the final weights are evaluated.
    best = checkpoint.best_model_path or None if isinstance(checkpoint, ModelCheckpoint) else None
    val = stage_metrics(trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False), "val")
    test = stage_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=best), "test")

    metrics = {f"val_{k}": v for k, v in val.items()} | {f"test_{k}": v for k, v in test.items()}
    runs.log_hparams(trainer, cfg, metrics)
    path = runs.write_metrics(
        runs.output_dir(),
        runs.run_record(
            "completed",
            **metrics,
            epochs=trainer.current_epoch,
            fit_seconds=round(fit_seconds, 2),
            params=model.num_parameters,
            best_checkpoint=best,
            history=callbacks.history.history,
            seconds=callbacks.timer.seconds,
            started_at=started_at,
            finished_at=time.time(),
        ),
    )
    log.info(
        "val acc %.4f (macro %.4f), test acc %.4f (macro %.4f); wrote %s",
        val["acc"],
        val["macro_acc"],
        test["acc"],
        test["macro_acc"],
        path,
    )
    return val["acc"]


@hydra.main(version_base="1.3", config_path=runs.config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return runs.run_task(train, cfg)


if __name__ == "__main__":
    main()
