"""Testing trained models alone (`python evaluate.py ckpt_path=...`): one checkpoint, or several and the
ensemble of their calibrated probabilities, with the paired test of the ensemble against its best member."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from emnist_lightning.analysis.predictions import HeldOutPredictions
from emnist_lightning.analysis.statistics import mcnemar_exact
from emnist_lightning.data import emnist_split
from emnist_lightning.errors import ConfigError
from emnist_lightning.models import load_classifier
from emnist_lightning.models.calibration import mean_of_probabilities
from emnist_lightning.models.metrics import calibration_error
from emnist_lightning.models.pretrained import resolve_models
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.provenance import provenance
from emnist_lightning.runs.record import RunRecord, stage_metrics
from emnist_lightning.training import build
from emnist_lightning.training.callbacks import PredictionsKeeper
from emnist_lightning.training.figure_callbacks import figure_seconds

log = logging.getLogger(__name__)


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
    cfg: DictConfig, context: RunContext, ckpt_path: str, extra_callbacks: list[L.Callback], keep_logits: bool = False
) -> tuple[RunRecord, PredictionsKeeper]:
    """One checkpoint's test pass and its record (not written); `keep_logits`: also keep its calibrated test
    logits (an ensemble's members)."""
    L.seed_everything(cfg.seed, workers=True)
    predictions = PredictionsKeeper(context.output_dir, cfg.seed)
    predictions.keep_logits = keep_logits
    callbacks = [predictions, *extra_callbacks]
    model = load_classifier(ckpt_path)
    model.test_time_shift = build.read_test_time_shift(cfg)
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
    members = [evaluate_checkpoint(cfg, context, path, [], keep_logits=True) for path in paths]
    splits = {record.split for record, _ in members}
    if len(splits) > 1:
        raise ConfigError(f"the ensemble's checkpoints were tested on different splits ({', '.join(sorted(splits))})")
    labels = torch.cat(members[0][1].labels).numpy()
    log_mean = mean_of_probabilities([torch.cat(keeper.logits) for _, keeper in members])
    mean = log_mean.exp()
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
        test_loss_calibrated=float(torch.nn.functional.nll_loss(log_mean, torch.from_numpy(labels))),
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
