"""A run's hyperparameters with its final metrics, for TensorBoard's HParams dashboard and the other
trackers, and the end of the trackers' runs."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from emnist_lightning.runs.context import RunContext


def hparams_for_logger(cfg: DictConfig, context: RunContext) -> dict[str, Any]:
    """Flat scalars for TensorBoard's HParams dashboard: group choices plus the tunable values."""
    params: dict[str, Any] = {f"choice/{group}": option for group, option in context.choices.items()}
    for section in ("model", "optimizer", "scheduler", "regularization", "data"):
        node = cfg.get(section)
        if node is None:
            continue
        flat = flatten(OmegaConf.to_container(node, resolve=True), prefix=section)
        params.update({k: v for k, v in flat.items() if not k.endswith("_target_") and not k.endswith("_partial_")})
    params["seed"] = cfg.get("seed")
    params["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    return params


def flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}"))
        return flat
    if isinstance(node, (list, tuple)):
        return {prefix: str(list(node))}
    return {prefix: node}


def log_hparams(trainer: L.Trainer, cfg: DictConfig, context: RunContext, metrics: dict[str, float]) -> None:
    """Write hyperparameters with their final metrics, for TensorBoard's HParams dashboard."""
    params = hparams_for_logger(cfg, context)
    hp_metrics = {f"hparams/{key}": value for key, value in metrics.items() if isinstance(value, float)}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=hp_metrics)
        else:
            logger.log_hyperparams(params)


def finish_tracker_runs(trainer: L.Trainer) -> None:
    """End the trackers' runs that Lightning leaves open (W&B): their summary and config are written at the
    end of a run, and the next job of a sweep starts a run of its own."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
