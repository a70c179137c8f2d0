"""`python train.py [overrides]`: train one configuration, then test its best checkpoint."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, open_dict

from emnist_lightning.errors import ConfigError
from emnist_lightning.pictures.callbacks import warm_up_painter
from emnist_lightning.runs import build, resume, timing
from emnist_lightning.runs.callbacks import early_stop_reason
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.record import RunRecord, log_hparams, stage_metrics
from emnist_lightning.runs.task import run_entry_point

log = logging.getLogger(__name__)


def train(cfg: DictConfig, context: RunContext) -> float:
    """Fit (or continue fitting, with resume= or as a requeued SLURM job), then evaluate the best checkpoint
    on validation and test; returns the best validation accuracy."""
    timing.start()
    if cfg.get("resume"):
        cfg = resume.resumed_config(cfg, context)
        resume_from = Path(cfg.resume) / resume.LAST_CHECKPOINT
    else:
        resume_from = resume.requeued_checkpoint(context.output_dir)
    if resume_from is not None:
        log.info("Continuing from %s", resume_from)
        continue_tensorboard_after(cfg, resume.checkpoint_step(resume_from))
    check_run_length(cfg.trainer)
    check_process_launch(cfg.trainer, context)
    L.seed_everything(cfg.seed, workers=True)
    callbacks = build.build_training_callbacks(cfg)
    warm_up_painter(callbacks.all)
    datamodule = build.build_datamodule(cfg)
    model = build.build_model(cfg)
    trainer = build.build_trainer(cfg, callbacks.all)
    timing.lap("build")

    started_at = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    timing.lap("after training")
    # Copies: validating and testing the best checkpoint below restore its callback states, which end at
    # its epoch.
    fitted = {
        "epochs": trainer.current_epoch,
        "fit_seconds": round(time.time() - started_at, 2),
        "params": model.num_parameters,
        "history": copy.deepcopy(callbacks.history.history),
        "seconds": copy.deepcopy(callbacks.timer.seconds),
        "started_at": started_at,
        "laps": timing.laps,
        "pictures": timing.pictures,
    }
    if callbacks.trial is not None and callbacks.trial.pruned_at is not None:
        return record_pruned_trial(context, callbacks.trial.pruned_at, fitted)

    checkpoint = trainer.checkpoint_callback
    # Without a checkpoint callback (callbacks.model_checkpoint=null) the final weights are evaluated.
    best = checkpoint.best_model_path or None if isinstance(checkpoint, ModelCheckpoint) else None
    metrics = stage_metrics(
        trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True), "val"
    )
    timing.lap("validate best")
    metrics |= stage_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True), "test")
    timing.lap("test best")
    fitted["seconds"]["test"] = callbacks.timer.seconds["test"]

    log_hparams(trainer, cfg, context, metrics)
    timing.lap("hparams")
    record = RunRecord.of_run(
        context,
        "fast_dev_run" if cfg.trainer.get("fast_dev_run") else "completed",
        **metrics,
        **fitted,
        best_checkpoint=best,
        stopped_early=early_stop_reason(trainer),
        finished_at=time.time(),
    )
    path = record.write(context.output_dir)
    if not trainer.is_global_zero:  # in DDP the main process writes and reports
        return record.val_acc
    log.info(
        "val acc %.4f (macro %.4f), test acc %.4f (macro %.4f); wrote %s",
        record.val_acc,
        record.val_macro_acc,
        record.test_acc,
        record.test_macro_acc,
        path,
    )
    return record.val_acc


def record_pruned_trial(context: RunContext, pruned_at: int, fitted: dict) -> float:
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
    return history["val/acc"][-1]  # the value Optuna keeps for a pruned trial: its last report


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


def continue_tensorboard_after(cfg: DictConfig, step: int) -> None:
    """Make the run's TensorBoard logs drop what the stopped run logged after its checkpoint, so every
    curve continues as one series."""
    for node in (cfg.get("logger") or {}).values():
        if node is not None and str(node.get("_target_", "")).endswith("TensorBoardLogger"):
            with open_dict(node):  # the live config of a requeued job is read-only in structure
                node.purge_step = step  # the first step after the checkpoint is logged at its global_step


def main() -> None:
    run_entry_point("train", train, prepare_arguments=resume.resume_arguments)


if __name__ == "__main__":
    main()
