"""`python -m emnist_lightning.cli.export ckpt_path=... format=onnx|torchscript` (or `emnist-export`): a
model other programs can run, with model.json naming its classes, in the run dir (conf/export.yaml)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.export import export
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point

log = logging.getLogger(__name__)


def export_model(cfg: DictConfig, context: RunContext) -> float:
    if not cfg.get("ckpt_path"):
        raise ConfigError("no checkpoint given: pass ckpt_path= a checkpoint written by train.py")
    path, difference = export(cfg.ckpt_path, cfg.format, context.output_dir, cfg.seed)
    log.info("wrote %s (largest logit difference from PyTorch on a random batch: %.2e)", path, difference)
    return difference


def main() -> None:
    run_entry_point("export", export_model)


if __name__ == "__main__":
    main()
