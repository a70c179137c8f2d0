"""Inside a trial's job: report validation accuracy to the study after every epoch, and stop when the
study's pruner says the trial will not catch up."""

from __future__ import annotations

import logging

import lightning as L
import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig

from emnist_lightning.search.study import PRUNED_AT, open_storage

log = logging.getLogger(__name__)


class TrialReport(L.Callback):
    """Set up from the `search.*` keys the sweeper gives each trial's job and the sweeper's pruner config
    (a storage keeps trials, not pruners). In DDP the main process talks to the study and passes its
    decision to the others."""

    def __init__(self, search: DictConfig, pruner: DictConfig | None, monitor: str = "val/acc") -> None:
        self.search, self.monitor = search, monitor
        self.pruner = instantiate(pruner) if pruner is not None else optuna.pruners.NopPruner()
        self.trial: optuna.Trial | None = None
        self.pruned_at: int | None = None  # the epoch after which the pruner stopped the trial

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            storage = open_storage(self.search.storage)
            study = optuna.load_study(study_name=self.search.study, storage=storage, pruner=self.pruner)
            # Trial's constructor takes the storage's id of the trial, which the storage looks up by number.
            study_id = storage.get_study_id_from_name(self.search.study)
            self.trial = optuna.Trial(
                study, storage.get_trial_id_from_study_id_trial_number(study_id, int(self.search.trial))
            )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        prune = False
        if self.trial is not None:
            epoch = trainer.current_epoch
            self.trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr(PRUNED_AT, epoch)
        if trainer.strategy.broadcast(prune):
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True
            log.info("The search's pruner stopped this trial after epoch %d", self.pruned_at)
