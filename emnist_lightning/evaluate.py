"""`python eval.py ckpt_path=...`: test any checkpoint on the test split of `data.data_dir`."""

from __future__ import annotations

import logging

import lightning as L
from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError
from emnist_lightning.models import load_classifier
from emnist_lightning.pictures.callbacks import warm_up_painter
from emnist_lightning.runs import build
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.record import RunRecord, stage_metrics
from emnist_lightning.runs.task import run_entry_point

log = logging.getLogger(__name__)
MAX_TEST_TIME_SHIFT = 2


def evaluate(cfg: DictConfig, context: RunContext) -> float:
    if not cfg.get("ckpt_path"):
        raise ConfigError("no checkpoint given: run python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt")
    L.seed_everything(cfg.seed, workers=True)
    callbacks = build.build_entries(cfg.get("callbacks"))
    warm_up_painter(callbacks)
    model = load_classifier(cfg.ckpt_path)
    model.test_time_shift = read_test_time_shift(cfg)
    trainer = build.build_trainer(cfg, callbacks)
    # ckpt_path also restores the training run's normalisation stats into the data module.
    metrics = stage_metrics(
        trainer.test(model, datamodule=build.build_datamodule(cfg), ckpt_path=cfg.ckpt_path), "test"
    )
    record = RunRecord.of_run(
        context, "completed", **metrics, checkpoint=str(cfg.ckpt_path), params=model.num_parameters
    )
    path = record.write(context.output_dir)
    log.info("test acc %.4f (macro %.4f); wrote %s", record.test_acc, record.test_macro_acc, path)
    return record.test_acc


def read_test_time_shift(cfg: DictConfig) -> int:
    shift = cfg.get("test_time_shift", 0)
    if not isinstance(shift, int) or not 0 <= shift <= MAX_TEST_TIME_SHIFT:
        raise ConfigError(
            f"test_time_shift={shift} must be a whole number of pixels from 0 (off) to {MAX_TEST_TIME_SHIFT}: "
            "larger shifts move ink out of EMNIST's blank border"
        )
    return shift


def main() -> None:
    run_entry_point("eval", evaluate)


if __name__ == "__main__":
    main()
