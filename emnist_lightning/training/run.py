"""A training run from top to bottom: config -> assembled run -> fit -> the best checkpoint validated and
tested -> record. Resuming (runs/resume.py) and a search trial's pruning (search/pruning.py) plug in here.
Also the evaluation of a checkpoint, which is the last two steps alone."""

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
from omegaconf import DictConfig, open_dict

from emnist_lightning.data import emnist_split
from emnist_lightning.errors import ConfigError
from emnist_lightning.models import load_classifier
from emnist_lightning.models.calibration import TEMPERATURE_KEY
from emnist_lightning.models.metrics import calibration_error
from emnist_lightning.models.pretrained import resolve_models
from emnist_lightning.runs import resume
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.provenance import provenance
from emnist_lightning.runs.record import RunRecord, stage_metrics
from emnist_lightning.study.predictions import HeldOutPredictions
from emnist_lightning.study.statistics import mcnemar_exact
from emnist_lightning.training import build
from emnist_lightning.training.callbacks import PredictionsKeeper, Stopwatch, early_stop_reason
from emnist_lightning.training.hparams import finish_tracker_runs, log_hparams
from emnist_lightning.training.pictures import FigureCallback

log = logging.getLogger(__name__)
MAX_TEST_TIME_SHIFT = 2


def train(cfg: DictConfig, context: RunContext) -> RunRecord:
    """Fit (or continue fitting, with resume= or as a requeued SLURM job), then evaluate the best checkpoint
    on validation and test; returns what metrics.json records."""
    stopwatch = Stopwatch()
    cfg, resume_from = starting_point(cfg, context)
    check_run_length(cfg.trainer)
    check_process_launch(cfg.trainer, context)
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


def evaluate(cfg: DictConfig, context: RunContext) -> RunRecord:
    """Test the checkpoint `cfg.ckpt_path` on the test split of `cfg.data`, or several checkpoints and the
    ensemble of their calibrated probabilities (`ckpt_path=[a,b,c]`); returns the record."""
    paths = [str(path) for path in resolve_models(cfg.get("ckpt_path"), cfg.pretrained_dir)]
    if len(paths) > 1:
        return evaluate_ensemble(cfg, context, paths)
    record, _ = evaluate_checkpoint(cfg, context, paths[0], build.build_entries(cfg.get("callbacks")))
    path = record.write(context.output_dir)
    log.info("%s; wrote %s", record.summary(), path)
    return record


def evaluate_checkpoint(
    cfg: DictConfig, context: RunContext, ckpt_path: str, extra_callbacks: list[L.Callback], keep: bool = False
) -> tuple[RunRecord, PredictionsKeeper]:
    """One checkpoint's test pass and its record (not written); `keep`: also keep its test probabilities."""
    L.seed_everything(cfg.seed, workers=True)
    predictions = PredictionsKeeper(context.output_dir, cfg.seed)
    predictions.keep_probabilities = keep
    callbacks = [predictions, *extra_callbacks]
    model = load_classifier(ckpt_path)
    model.test_time_shift = read_test_time_shift(cfg)
    trainer = build.build_trainer(cfg, callbacks)
    # ckpt_path also restores the training run's normalisation stats into the data module.
    # data.split null (conf/data/model_split.yaml): the checkpoint's own split
    datamodule = build.build_datamodule(cfg, split=cfg.data.split or model.split)
    results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    record = RunRecord.of_run(
        context,
        "completed",
        **stage_metrics(results, "test"),
        **predictions.intervals,
        **figure_seconds(callbacks),
        provenance=provenance(datamodule.source_files(), str(trainer.precision)),
        checkpoint=str(ckpt_path),
        split=datamodule.split.name,
        params=model.num_parameters,
        temperature=model.temperature,
    )
    return record, predictions


def evaluate_ensemble(cfg: DictConfig, context: RunContext, paths: list[str]) -> RunRecord:
    """Each member's test pass (its figures in metrics.json's `members`), then the ensemble: the mean of
    their calibrated probabilities, with its intervals, calibration error and a paired test against the
    best member. Test figures are not drawn for an ensemble."""
    members = [evaluate_checkpoint(cfg, context, path, [], keep=True) for path in paths]
    splits = {record.split for record, _ in members}
    if len(splits) > 1:
        raise ConfigError(f"the ensemble's checkpoints were tested on different splits ({', '.join(sorted(splits))})")
    first = members[0][1]
    labels = torch.cat(first.labels).numpy()
    mean = torch.stack([torch.cat(keeper.probabilities) for _, keeper in members]).mean(dim=0)
    classes = emnist_split(members[0][0].split or "").classes
    ensemble = HeldOutPredictions(labels, mean.argmax(dim=1).numpy(), classes)
    best_member = max(members, key=lambda member: member[0].test_acc or 0.0)
    paired = mcnemar_exact(torch.cat(best_member[1].predictions).numpy() == labels, ensemble.correct)
    ensemble.save(context.output_dir)
    record = RunRecord.of_run(
        context,
        "completed",
        split=members[0][0].split,
        test_acc=ensemble.accuracy,
        test_macro_acc=ensemble.macro_accuracy,
        test_ece_calibrated=calibration_error(mean, torch.from_numpy(labels)),
        test_loss_calibrated=float(torch.nn.functional.nll_loss(mean.clamp_min(1e-12).log(), torch.from_numpy(labels))),
        **ensemble.intervals(cfg.seed),
        checkpoint=", ".join(paths),
        members=[member_summary(record) for record, _ in members],
        ensemble_vs_best_member={
            "member": best_member[0].checkpoint,
            "difference": paired.difference,
            "interval": paired.interval.as_list(),
            "p_value": paired.p_value,
            "test": paired.test,
        },
        provenance=members[0][0].provenance,
        params=sum(record.params or 0 for record, _ in members),
    )
    path = record.write(context.output_dir)
    for member, _ in members:
        log.info("member %s: %s", member.checkpoint, member.summary())
    log.info("ensemble of %d: %s; wrote %s", len(paths), record.summary(), path)
    return record


def member_summary(record: RunRecord) -> dict[str, Any]:
    keys = (
        "checkpoint",
        "test_acc",
        "test_macro_acc",
        "test_acc_ci",
        "test_macro_acc_ci",
        "test_ece",
        "test_ece_calibrated",
        "temperature",
    )
    return {key: getattr(record, key) for key in keys}


def store_temperature(checkpoint_path: Path, temperature: float) -> None:
    """Keep the fitted temperature in the best checkpoint, so evaluation, prediction, the drawing page and
    exports use it."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    checkpoint[TEMPERATURE_KEY] = temperature
    build.AtomicCheckpointIO().save_checkpoint(checkpoint, checkpoint_path)
    log.info("Temperature %.3f (fitted on validation) kept in %s", temperature, checkpoint_path)


def starting_point(cfg: DictConfig, context: RunContext) -> tuple[DictConfig, Path | None]:
    """The run's config and the checkpoint it continues from: a stopped run's own (resume=<dir>), a
    requeued SLURM job's earlier attempt, or none for a new run."""
    if cfg.get("resume"):  # composed again from the project's configs and the run's checked overrides
        resume_from = Path(cfg.resume) / resume.LAST_CHECKPOINT
    else:
        resume_from = resume.requeued_checkpoint(context.output_dir)
    if resume_from is not None:
        log.info("Continuing from %s", resume_from)
        continue_tensorboard_after(cfg, resume.checkpoint_step(resume_from))
    return cfg, resume_from


def figure_seconds(callbacks: list[L.Callback]) -> dict[str, dict[str, float]]:
    """{'pictures': seconds drawing each figure, by file}, for the record."""
    drawn = [callback.figure_seconds for callback in callbacks if isinstance(callback, FigureCallback)]
    return {"pictures": {name: seconds for each in drawn for name, seconds in each.items()}}


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


def read_test_time_shift(cfg: DictConfig) -> int:
    shift = cfg.get("test_time_shift", 0)
    if not isinstance(shift, int) or not 0 <= shift <= MAX_TEST_TIME_SHIFT:
        raise ConfigError(
            f"test_time_shift={shift} must be a whole number of pixels from 0 (off) to {MAX_TEST_TIME_SHIFT}: "
            "larger shifts move ink out of EMNIST's blank border"
        )
    return shift


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
