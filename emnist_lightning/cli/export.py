"""`python -m emnist_lightning.cli.export ckpt_path=... format=onnx|torchscript` (or `emnist-export`): a
model other programs can run, with model.json naming its classes, in the run dir (conf/export.yaml)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from emnist_lightning.inference.export import export
from emnist_lightning.models.pretrained import resolve_models
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point

log = logging.getLogger(__name__)


def export_model(cfg: DictConfig, context: RunContext) -> float:
    models = resolve_models(cfg.get("ckpt_path"), cfg.pretrained_dir)
    path, difference = export(models, cfg.format, context.output_dir, cfg.seed)
    log.info("wrote %s (largest logit difference from PyTorch on a random batch: %.2e)", path, difference)
    return difference


def main() -> None:
    run_entry_point("export", export_model)


if __name__ == "__main__":
    main()
