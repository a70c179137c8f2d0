"""A study in its storage, and what a search leaves in its sweep dir: results and Optuna's plots."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import optuna
import yaml
from filelock import FileLock
from matplotlib import pyplot
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from emnist_lightning.atomic import write_atomically
from emnist_lightning.pictures.plots import save_figure

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
# Set on a trial whose job was stopped by Ctrl-C or SIGTERM: it failed, but not because of its parameters.
INTERRUPTED = "interrupted"
PRUNED_AT = "pruned_at_epoch"


def open_storage(url: str) -> BaseStorage:
    """SQLite or any database URL SQLAlchemy knows (postgresql://..., mysql://...), or
    `journal:<file>`: Optuna's journal file, which workers on several machines can share on a network disk
    without a database server."""
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url.removeprefix(JOURNAL_PREFIX).removeprefix("//")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    # Workers of one machine take turns on SQLite's lock; the default 5 s wait is short for a busy disk.
    engine = {"connect_args": {"timeout": 60}} if url.startswith(SQLITE_PREFIX) else None
    return RDBStorage(url, engine_kwargs=engine)


def database_url(url: str) -> URL | None:
    """SQLAlchemy's reading of a database URL; None for a journal file or what SQLAlchemy cannot read."""
    if url.startswith(JOURNAL_PREFIX):
        return None
    try:
        return make_url(url)
    except ArgumentError:
        return None


def without_password(url: str) -> str:
    """The URL as logs may show it: a database password replaced by ***."""
    parsed = database_url(url)
    return url if parsed is None else parsed.render_as_string(hide_password=True)


def has_password(url: str) -> bool:
    parsed = database_url(url)
    return parsed is not None and parsed.password is not None


def creation_lock(url: str) -> AbstractContextManager[object]:
    """Held while a worker creates or opens the study: two processes creating one new SQLite file at once
    would both lay out its tables, and one fails. Database servers and journal files need no lock."""
    if not url.startswith(SQLITE_PREFIX) or url == "sqlite://":
        return nullcontext()
    return FileLock(url.removeprefix(SQLITE_PREFIX) + ".lock")


def trial_of(study: optuna.Study, number: int) -> FrozenTrial:
    """The trial numbered `number`, as its storage holds it now (a job in another process may have
    written to it)."""
    return next(trial for trial in study.get_trials(deepcopy=False) if trial.number == number)


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Whether a trial counts toward max_trials: all but those stopped by an interruption."""
    return not (trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED))


def write_outcome(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """optimization_results.yaml (best trial, trials by state) and Optuna's own plots in `sweep_dir`."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(trial.state.name.lower() for trial in trials)
    results: dict[str, object] = {"study": study.study_name, "direction": study.direction.name.lower()}
    results["trials"] = dict(states)
    if states["complete"]:
        best = study.best_trial
        results |= {"best_trial": best.number, "best_value": best.value, "best_params": best.params}
    results_path = sweep_dir / "optimization_results.yaml"
    write_atomically(results_path, yaml.safe_dump(results, sort_keys=False))
    return [results_path, *write_plots(study, sweep_dir)]


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """optimization_history.png, and param_importances.png once two trials have completed."""
    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    plots = {"optimization_history.png": optuna_plots.plot_optimization_history}
    if completed >= 2 and study.get_trials(deepcopy=False)[0].params:
        plots["param_importances.png"] = optuna_plots.plot_param_importances
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in plots.items():
            fig = plot(study, target_name="validation accuracy").get_figure()
            fig.set_size_inches(9, 5)
            fig.tight_layout()  # Optuna's layout cuts long parameter names and the legend
            save_figure(fig, sweep_dir / name)
            pyplot.close(fig)  # Optuna draws through pyplot, which would keep every figure
            paths.append(sweep_dir / name)
    return paths
