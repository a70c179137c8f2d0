"""`python train.py [overrides]`: train one configuration, then test its best checkpoint."""

from __future__ import annotations

import logging
import time

import hydra
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from emnist_lightning.runs import build
from emnist_lightning.runs.config import config_dir
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.record import RunRecord, log_hparams, stage_metrics
from emnist_lightning.runs.task import run_task

log = logging.getLogger(__name__)


def train(cfg: DictConfig, context: RunContext) -> float:
    """Fit, then evaluate the best checkpoint on validation and test; returns best val accuracy."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build.build_datamodule(cfg)
    model = build.build_model(cfg)
    callbacks = build.build_training_callbacks(cfg)
    trainer = build.build_trainer(cfg, callbacks.all)

    started_at = time.time()
    trainer.fit(model, datamodule=datamodule)
    fit_seconds = time.time() - started_at

    checkpoint = trainer.checkpoint_callback
    # Without a checkpoint callback (callbacks.model_checkpoint=null) the final weights are evaluated.
    best = checkpoint.best_model_path or None if isinstance(checkpoint, ModelCheckpoint) else None
    metrics = stage_metrics(trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False), "val")
    metrics |= stage_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=best), "test")

    log_hparams(trainer, cfg, context, metrics)
    record = RunRecord.of_run(
        context,
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
    )
    path = record.write(context.output_dir)
    log.info(
        "val acc %.4f (macro %.4f), test acc %.4f (macro %.4f); wrote %s",
        record.val_acc,
        record.val_macro_acc,
        record.test_acc,
        record.test_macro_acc,
        path,
    )
    return record.val_acc


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(train, cfg)


if __name__ == "__main__":
    main()
