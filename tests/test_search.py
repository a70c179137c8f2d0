"""Hyperparameter search on Optuna 5 (emnist_lightning/search): the search space, pruning, workers that
share one study, an interrupted search that resumes, and what the report shows of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from emnist_lightning.analysis import report
from emnist_lightning.errors import ConfigError
from emnist_lightning.overrides import override_text
from emnist_lightning.runs.config import compose
from emnist_lightning.search.space import search_space
from emnist_lightning.search.study import INTERRUPTED, open_storage, without_password
from emnist_lightning.search.sweeper import OptunaSearch
from tests.conftest import REPO_ROOT, run_entry_point
from tests.signals import signal_at_step

PASSWORD = "hunter2-not-in-any-file"
# Small, quick trials: the test pictures are what a trial's job spends most time on, and searches skip them.
TRIAL = [
    "model=mlp",
    "model.hidden_dims=[32,32,32]",
    "trainer.max_epochs=3",
    "callbacks.progress_bar=null",
    "callbacks.test_diagnostics=null",
    "callbacks.model_pictures=null",
    "callbacks.dataset_samples=null",
]


def test_search_space_reads_hydra_sweep_syntax() -> None:
    space, fixed = search_space(
        {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "model.batch_norm": "choice(true, false)"},
        ["model.activation=relu,gelu", "data.batch_size=range(64, 257, 64)", "trainer.max_epochs=2"],
    )
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "model.batch_norm": CategoricalDistribution([True, False]),
        "model.activation": CategoricalDistribution(["relu", "gelu"]),
        "data.batch_size": IntDistribution(64, 256, step=64),
    }
    assert fixed == ["trainer.max_epochs=2"]
    with pytest.raises(ConfigError, match="optimizer.lr"):
        search_space({"optimizer.lr": "tag(log, interval(0, 1))"}, [])  # log scale from 0


@pytest.mark.parametrize(
    "value", [True, 0.000123456789, 512, "gelu", "leaky_relu", "sqlite:////a b/o.db", "it's", "null"]
)
def test_sampled_values_reach_the_job_with_their_type(value: object) -> None:
    parsed = OverridesParser.create().parse_overrides([f"key={override_text(value)}"])[0].value()
    assert parsed == value and type(parsed) is type(value)


def test_journal_storage_makes_its_folder(tmp_path: Path) -> None:
    storage = open_storage(f"journal:{tmp_path}/shared/study.log")
    optuna.create_study(study_name="s", storage=storage).optimize(lambda trial: trial.suggest_float("x", 0, 1), 2)
    assert (
        len(optuna.load_study(study_name="s", storage=open_storage(f"journal:{tmp_path}/shared/study.log")).trials) == 2
    )


def search_command(sweep_dir: Path, data_dir: Path, *overrides: str) -> list[str]:
    return [
        "-m",
        "hydra/sweeper=emnist_optuna",
        f"hydra.sweep.dir={sweep_dir}",
        f"data.data_dir={data_dir}",
        *TRIAL,
        *overrides,
    ]


def load_trials(sweep_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="emnist", storage=f"sqlite:///{sweep_dir}/optuna.db").get_trials()


@pytest.mark.slow
def test_pruner_stops_trials_in_a_bad_region(synthetic_dir: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "search"  # does not exist yet, as on a user's first search
    result = run_entry_point(
        "train.py",
        *search_command(sweep_dir, synthetic_dir, "optimizer.lr=choice(0.003,1e-9)", "hydra.sweeper.n_trials=6"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load_trials(sweep_dir)
    pruned = [trial for trial in trials if trial.state == TrialState.PRUNED]
    assert pruned, [(trial.state, trial.params) for trial in trials]
    assert all(trial.params["optimizer.lr"] == 1e-9 for trial in pruned), "only the learning rate that learns nothing"
    for trial in pruned:
        record = json.loads((sweep_dir / f"trial_{trial.number}" / "metrics.json").read_text())
        assert record["status"] == "pruned"
        assert record["epochs"] < 3 and len(record["history"]["val/acc"]) == record["epochs"]
        assert "test_acc" not in record, "a pruned trial is not tested"
    table = report.report(sweep_dir, quiet=True)
    assert sorted(table["trial"]) == list(range(6))
    assert set(table["status"]) == {"completed", "pruned"}
    assert "search.storage" not in table.columns
    for picture in ("optimization_history.png", "param_importances.png"):
        assert (sweep_dir / picture).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_two_workers_share_one_study(synthetic_dir: Path, tmp_path: Path) -> None:
    """Two train.py -m processes started together on one SQLite study: each runs its trials, and no trial
    number (or job folder) is used twice."""
    command = [sys.executable, str(REPO_ROOT / "train.py")]
    command += search_command(
        tmp_path, synthetic_dir, "optimizer.lr=tag(log,interval(1e-4,1e-2))", "hydra.sweeper.n_trials=2"
    )
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    workers = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()[-3000:]
    trials = load_trials(tmp_path)
    assert sorted(trial.number for trial in trials) == [0, 1, 2, 3]
    assert all(trial.state == TrialState.COMPLETE for trial in trials)
    records = [json.loads((tmp_path / f"trial_{n}" / "metrics.json").read_text()) for n in range(4)]
    assert all(record["status"] == "completed" for record in records)


@pytest.mark.slow
def test_interrupted_search_resumes_without_replaying(synthetic_dir: Path, tmp_path: Path) -> None:
    space = "optimizer.lr=tag(log,interval(1e-4,1e-2))"
    stopped = run_entry_point(
        "train.py",
        *search_command(tmp_path, synthetic_dir, space, "hydra.sweeper.n_trials=3"),
        *signal_at_step(2, "SIGTERM"),
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    (first,) = load_trials(tmp_path)
    assert first.state == TrialState.FAIL and first.user_attrs[INTERRUPTED]
    assert json.loads((tmp_path / "trial_0" / "metrics.json").read_text())["status"] == "interrupted"

    # max_trials counts the study's trials but the interrupted one: two more
    budget = ["hydra.sweeper.n_trials=5", "hydra.sweeper.max_trials=2"]
    resumed = run_entry_point("train.py", *search_command(tmp_path, synthetic_dir, space, *budget))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = load_trials(tmp_path)
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    learning_rates = [trial.params["optimizer.lr"] for trial in trials]
    assert len(set(learning_rates)) == 3, "the resumed search proposed what it had proposed before"
    assert sorted(report.report(tmp_path, quiet=True)["status"]) == ["completed", "completed", "interrupted"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=tag(log,interval(0,1))", "error: optimizer.lr=tag(log,interval(0,1)): `low > 0` must hold"),
        ("hydra.sweeper.storage=null", "error: hydra.sweeper.storage is empty"),
        ("hydra/launcher=slurm", "error: hydra.sweeper.storage is SQLite, but SLURM jobs run on other machines"),
        (
            f"hydra.sweeper.storage=postgresql://emnist:{PASSWORD}@127.0.0.1:9/db",
            "error: hydra.sweeper.storage holds a password",
        ),
    ],
)
def test_bad_search_settings_are_one_line(synthetic_dir: Path, tmp_path: Path, override: str, message: str) -> None:
    result = run_entry_point("train.py", *search_command(tmp_path, synthetic_dir, override))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
    assert not list(tmp_path.glob("trial_*")), "no trial ran"
    assert not [path for path in tmp_path.rglob("*") if path.is_file() and PASSWORD.encode() in path.read_bytes()]


@pytest.mark.slow
def test_a_damaged_study_is_one_line(synthetic_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "optuna.db").write_bytes(b"not a database" * 100)
    result = run_entry_point("train.py", *search_command(tmp_path, synthetic_dir))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    expected = f"error: cannot open the Optuna study in sqlite:///{tmp_path}/optuna.db"
    assert last.startswith(expected), result.stderr[-2000:]
    assert "move it away" in last and "Traceback" not in result.stderr
    assert (tmp_path / "optuna.db").read_bytes() == b"not a database" * 100


def test_a_password_from_the_environment_reaches_jobs_as_the_interpolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweeper hands its jobs `${oc.env:...}`, so the password is in no trial's overrides, config or log,
    yet each job's config resolves to the full URL."""
    url = f"postgresql://emnist:{PASSWORD}@db.example/optuna"
    monkeypatch.setenv("OPTUNA_STORAGE", url)
    search = OptunaSearch("emnist", url, "maximize", 1, 1, None, OmegaConf.create({}), OmegaConf.create({}), None)
    sweep_config = OmegaConf.create({"hydra": {"sweeper": {"storage": "${oc.env:OPTUNA_STORAGE}"}, "launcher": {}}})
    search.check_storage(sweep_config)
    trial = optuna.create_study().ask()
    overrides = search.job_overrides(trial, [])
    assert not [override for override in overrides if PASSWORD in override]
    assert compose("train", overrides, tmp_path).search.storage == url
    assert PASSWORD not in without_password(url)
