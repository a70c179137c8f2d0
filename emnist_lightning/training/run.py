"""A training run from top to bottom: config -> assembled run -> fit -> the best checkpoint validated and
tested -> record. Resuming (runs/resume.py) and a search trial's pruning (search/pruning.py) plug in here;
testing a checkpoint or an ensemble alone is evaluation.py."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.calibration import TEMPERATURE_KEY
from emnist_lightning.runs import resume
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.provenance import provenance
from emnist_lightning.runs.record import RunRecord, stage_metrics
from emnist_lightning.training import build
from emnist_lightning.training.callbacks import Stopwatch, early_stop_reason
from emnist_lightning.training.figure_callbacks import figure_seconds
from emnist_lightning.training.hparams import finish_tracker_runs, log_hparams

log = logging.getLogger(__name__)


def train(cfg: DictConfig, context: RunContext) -> RunRecord:
    """Fit (or continue fitting, with resume= or as a requeued SLURM job), then evaluate the best checkpoint
    on validation and test; returns what metrics.json records."""
    stopwatch = Stopwatch()
    resume_from = resume.continued_from(cfg, context)
    check_run_length(cfg.trainer)
    check_process_launch(cfg.trainer, context)
    test_time_shift = build.read_test_time_shift(cfg)  # read now: a wrong value stops the run before its fit
    L.seed_everything(cfg.seed, workers=True)
    callbacks = build.build_training_callbacks(cfg, context, stopwatch)
    datamodule = build.build_datamodule(cfg)
    model = build.build_model(cfg, datamodule)
    trainer = build.build_trainer(cfg, callbacks.all)
    stopwatch.lap("build")

    started_at = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    stopwatch.lap("after training")
    # Copies: validating and testing the best checkpoint below restore its callback states, which end at
    # its epoch.
    fitted = {
        "epochs": trainer.current_epoch,
        "fit_seconds": round(time.time() - started_at, 2),
        "split": model.split,
        "params": model.num_parameters,
        "history": copy.deepcopy(callbacks.history.history),
        "seconds": copy.deepcopy(callbacks.timer.seconds),
        "started_at": started_at,
        "laps": stopwatch.laps,
    }
    if callbacks.trial is not None and callbacks.trial.pruned_at is not None:
        return record_pruned_trial(context, callbacks.trial.pruned_at, fitted | figure_seconds(callbacks.all))

    checkpoint = trainer.checkpoint_callback
    # Without a checkpoint callback (callbacks.model_checkpoint=null) the final weights are evaluated.
    best = checkpoint.best_model_path or None if isinstance(checkpoint, ModelCheckpoint) else None
    metrics = stage_metrics(
        trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True), "val"
    )
    if callbacks.temperature is not None and callbacks.temperature.fitted:
        metrics |= callbacks.temperature.fitted
        if best and trainer.is_global_zero:
            store_temperature(Path(best), model.temperature)
        trainer.strategy.barrier()  # every rank's test below reads the checkpoint the main one wrote
    stopwatch.lap("validate best")
    model.test_time_shift = test_time_shift
    metrics |= stage_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True), "test")
    stopwatch.lap("test best")
    fitted["seconds"]["test"] = callbacks.timer.seconds["test"]

    log_hparams(trainer, cfg, context, metrics)
    finish_tracker_runs(trainer)
    stopwatch.lap("hparams")
    record = RunRecord.of_run(
        context,
        "fast_dev_run" if cfg.trainer.get("fast_dev_run") else "completed",
        **metrics,
        **fitted,
        **figure_seconds(callbacks.all),
        **callbacks.predictions.intervals,
        provenance=provenance(datamodule.source_files(), str(trainer.precision)),
        best_checkpoint=best,
        stopped_early=early_stop_reason(trainer),
        finished_at=time.time(),
    )
    path = record.write(context.output_dir)
    if trainer.is_global_zero:  # in DDP the main process writes and reports
        log.info("%s; wrote %s", record.summary(), path)
    return record


def store_temperature(checkpoint_path: Path, temperature: float) -> None:
    """Keep the fitted temperature in the best checkpoint, so evaluation, prediction, the drawing page and
    exports use it."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    checkpoint[TEMPERATURE_KEY] = temperature
    build.AtomicCheckpointIO().save_checkpoint(checkpoint, checkpoint_path)
    log.info("Temperature %.3f (fitted on validation) kept in %s", temperature, checkpoint_path)


def record_pruned_trial(context: RunContext, pruned_at: int, fitted: dict[str, Any]) -> RunRecord:
    """A search trial stopped by the pruner after epoch `pruned_at`: its record holds the epochs it ran and
    its best epoch's validation metrics, but not the best checkpoint's passes and the test pictures, which
    would cost time for a configuration that lost."""
    history = fitted["history"]
    best_epoch = max(range(len(history["val/acc"])), key=history["val/acc"].__getitem__)
    record = RunRecord.of_run(
        context,
        "pruned",
        **{f"val_{key.removeprefix('val/')}": values[best_epoch] for key, values in history.items()},
        **fitted,
        stopped_early=f"pruned by the search after epoch {pruned_at}",
        finished_at=time.time(),
    )
    record.write(context.output_dir)
    return record


def check_run_length(trainer: DictConfig) -> None:
    for key in ("max_epochs", "max_steps"):
        if trainer.get(key) == 0:
            raise ConfigError(f"trainer.{key}=0 trains nothing; set it to 1 or more (or -1 for no limit on steps)")


def check_process_launch(trainer: DictConfig, context: RunContext) -> None:
    """Lightning starts DDP's other processes by running this command line again, which in a local -m
    sweep would start the whole sweep again; on SLURM the scheduler starts them instead."""
    if context.multirun and "ddp" in str(trainer.get("strategy")) and not SLURMEnvironment.detect():
        raise ConfigError(
            f"trainer.strategy={trainer.strategy} cannot run inside a local -m sweep; run DDP jobs one at a time, "
            "or sweep on SLURM with hydra/launcher=slurm hydra.launcher.tasks_per_node=<devices>"
        )
