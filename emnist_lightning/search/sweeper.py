"""The search loop: ask Optuna for trials, launch them as Hydra jobs, tell Optuna how they ended.

Each batch asks `n_jobs` trials and hands them to the configured launcher together (the basic launcher
runs them one after another; joblib and submitit run them at once). All state lives in the study's
storage, so a search resumes by running the same command again, and several `train.py -m` processes
(on one machine through SQLite, on several through a database or a journal file) share one study: the
storage numbers every trial once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import Trial, TrialState

from emnist_lightning.errors import ConfigError
from emnist_lightning.overrides import override_text
from emnist_lightning.search.space import search_space
from emnist_lightning.search.study import (
    INTERRUPTED,
    PRUNED_AT,
    SQLITE_PREFIX,
    counts_toward_budget,
    creation_lock,
    has_password,
    open_storage,
    trial_of,
    without_password,
    write_outcome,
)

log = logging.getLogger(__name__)


class OptunaSearch:
    """What the `emnist_optuna` sweeper does; its settings are conf/hydra/sweeper/emnist_optuna.yaml's."""

    def __init__(
        self,
        study_name: str,
        storage: str | None,
        direction: str,
        n_trials: int,
        n_jobs: int,
        max_trials: int | None,
        sampler: DictConfig,
        pruner: DictConfig,
        params: DictConfig | None,
    ) -> None:
        if not storage:
            raise ConfigError(
                "hydra.sweeper.storage is empty; the trials report to the study through it. Keep the default "
                "SQLite file in the sweep dir, or give a database URL or journal:<file>"
            )
        if n_trials < 1 or n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must be 1 or more")
        self.study_name, self.storage_url, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs, self.max_trials = n_trials, n_jobs, max_trials
        self.sampler, self.pruner = sampler, pruner
        self.params = {str(key): str(value) for key, value in (params or {}).items()}
        self.storage_for_jobs = storage
        self.launcher: Any = None
        self.sweep_dir: Path | None = None
        self.job_index = 0

    def setup(self, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.check_storage(config)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def check_storage(self, config: DictConfig) -> None:
        """Refuse what would break or leak: SQLite shared by jobs on other machines (its locks are unreliable
        on network filesystems), and a password written out in the command line or config, which Hydra
        copies into every trial's files. A password read from the environment stays there: the jobs get the
        interpolation, not its value."""
        written = OmegaConf.to_container(config.hydra.sweeper, resolve=False)["storage"]
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if self.storage_url.startswith(SQLITE_PREFIX) and "slurm" in launcher.lower():
            raise ConfigError(
                "hydra.sweeper.storage is SQLite, but SLURM jobs run on other machines, where SQLite's locking on a "
                "shared filesystem is unreliable; use hydra.sweeper.storage=journal:${hydra.sweep.dir}/optuna.journal "
                "or a database server's URL"
            )
        if has_password(self.storage_url):
            if "${" not in str(written):
                raise ConfigError(
                    "hydra.sweeper.storage holds a password, which would be written into every trial's files and "
                    "logs; put the URL in an environment variable and pass "
                    "hydra.sweeper.storage='${oc.env:OPTUNA_STORAGE}'"
                )
            self.storage_for_jobs = str(written)

    def open_study(self) -> optuna.Study:
        try:
            with creation_lock(self.storage_url):
                return optuna.create_study(
                    study_name=self.study_name,
                    storage=open_storage(self.storage_url),
                    direction=self.direction,
                    pruner=instantiate(self.pruner),
                    load_if_exists=True,
                )
        except (sqlalchemy.exc.SQLAlchemyError, ValueError, KeyError) as err:
            cause = getattr(err, "orig", None) or err
            raise ConfigError(
                f"cannot open the Optuna study in {without_password(self.storage_url)} ({type(cause).__name__}: "
                f"{str(cause).splitlines()[0]}); if the file is damaged, move it away to start a new study, or point "
                "hydra.sweeper.storage at another one"
            ) from err

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        space, fixed = search_space(self.params, arguments)
        study = self.open_study()
        where = without_password(self.storage_url)
        log.info("Study %s in %s: %d trials so far", self.study_name, where, len(study.trials))
        returns: list[JobReturn] = []
        while len(returns) < self.n_trials:
            size = min(self.n_jobs, self.n_trials - len(returns), self.budget_left(study))
            if size <= 0:
                log.info("The study holds max_trials=%s trials; stopping", self.max_trials)
                break
            trials = [self.ask(study, space) for _ in range(size)]
            returns += self.run_batch(study, trials, fixed)
        assert self.sweep_dir is not None
        for path in write_outcome(study, self.sweep_dir):
            log.info("Wrote %s", path)
        return returns

    def budget_left(self, study: optuna.Study) -> int:
        if self.max_trials is None:
            return self.n_trials
        return self.max_trials - sum(counts_toward_budget(trial) for trial in study.get_trials(deepcopy=False))

    def ask(self, study: optuna.Study, space: dict[str, BaseDistribution]) -> Trial:
        """A new trial with its parameters sampled. The sampler is seeded with the seed plus the number
        of trials the study holds, so a rerun is repeatable yet a resumed search does not replay the
        proposals it began with."""
        seed = self.sampler.get("seed")
        reseeded = {} if seed is None else {"seed": int(seed) + len(study.get_trials(deepcopy=False))}
        study.sampler = instantiate(self.sampler, **reseeded)
        return study.ask(space)

    def job_overrides(self, trial: Trial, fixed: Sequence[str]) -> list[str]:
        """The trial's command line: fixed overrides, sampled values, and where to report (search.*)."""
        sampled = [f"{key}={override_text(value)}" for key, value in trial.params.items()]
        identity = [
            f"search.storage={override_text(self.storage_for_jobs)}",
            f"search.study={override_text(self.study_name)}",
            f"search.trial={trial.number}",
            f"hydra.sweep.subdir=trial_{trial.number}",  # unique among all workers of the study
        ]
        return [*fixed, *sampled, *identity]

    def run_batch(self, study: optuna.Study, trials: list[Trial], fixed: Sequence[str]) -> list[JobReturn]:
        told: set[int] = set()
        try:
            returns = self.launcher.launch([self.job_overrides(trial, fixed) for trial in trials], self.job_index)
            self.job_index += len(trials)
            for trial, job in zip(trials, returns, strict=True):
                self.tell(study, trial, job)
                told.add(trial.number)
            return list(returns)
        finally:  # interrupted: its trials end as failed, marked so that max_trials does not count them
            for trial in trials:
                if trial.number not in told:
                    trial.set_user_attr(INTERRUPTED, True)
                    study.tell(trial, state=TrialState.FAIL)

    def tell(self, study: optuna.Study, trial: Trial, job: JobReturn) -> None:
        stored = trial_of(study, trial.number)
        value = job.return_value if job.status == JobStatus.COMPLETED else None
        if PRUNED_AT in stored.user_attrs:
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d pruned after epoch %d", trial.number, stored.user_attrs[PRUNED_AT])
        elif isinstance(value, float):
            study.tell(trial, value)
            log.info("Trial %d: %.4f %s", trial.number, value, trial.params)
        else:  # the job's metrics.json says why
            study.tell(trial, state=TrialState.FAIL)
            log.warning("Trial %d failed: see %s", trial.number, job.working_dir)
