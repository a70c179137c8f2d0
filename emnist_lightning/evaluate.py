"""`python eval.py ckpt_path=...`: test any checkpoint on the test split of `data.data_dir`."""

from __future__ import annotations

import logging

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from emnist_lightning import runs
from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.module import load_classifier
from emnist_lightning.train import stage_metrics

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> float:
    if not cfg.get("ckpt_path"):
        raise ConfigError("no checkpoint given: run python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt")
    L.seed_everything(cfg.seed, workers=True)
    model = load_classifier(cfg.ckpt_path)
    datamodule: EMNISTDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    if model.num_classes != datamodule.num_classes:
        raise CheckpointError(
            f"checkpoint '{cfg.ckpt_path}' predicts {model.num_classes} classes but the data has "
            f"{datamodule.num_classes}; evaluate it on the split it was trained for"
        )
    trainer = runs.build_trainer(cfg, runs.build_callbacks(cfg.get("callbacks")))
    # ckpt_path restores the training run's normalisation stats into the data module too.
    test = stage_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path), "test")
    metrics = {f"test_{k}": v for k, v in test.items()}
    path = runs.write_metrics(
        runs.output_dir(),
        runs.run_record("completed", **metrics, checkpoint=str(cfg.ckpt_path), params=model.num_parameters),
    )
    log.info("test acc %.4f (macro %.4f); wrote %s", test["acc"], test["macro_acc"], path)
    return test["acc"]


@hydra.main(version_base="1.3", config_path=runs.config_dir(), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return runs.run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
