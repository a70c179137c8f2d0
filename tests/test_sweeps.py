"""Multirun sweeps on the synthetic dataset, and the report that compares them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from emnist_lightning.analysis import report
from tests.conftest import run_entry_point

pytestmark = pytest.mark.slow

QUICK = ["model=mlp", "model.hidden_dims=[32,32,32]", "trainer.max_epochs=2", "callbacks.progress_bar=null"]


def sweep(sweep_dir: Path, data_dir: Path, *overrides: str):
    result = run_entry_point(
        "train.py", "-m", f"data.data_dir={data_dir}", f"hydra.sweep.dir={sweep_dir}", *QUICK, *overrides
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_four_job_sweep_reports_four_rows_and_frees_each_job_before_the_next(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    """The basic launcher runs jobs one after another in one process: nothing of an earlier job (its model,
    trainer, data, loggers) may stay alive, e.g. frozen by gc.freeze() before its cycles were collected; and
    the report has a row for each job. One sweep for both: each costs a process start and four fits."""
    result = run_entry_point(
        "tests/sweep_memory.py",
        "-m",
        f"data.data_dir={synthetic_dir}",
        f"hydra.sweep.dir={tmp_path}",
        *QUICK,
        "optimizer=sgd,adam",
        "regularization=none,l2",
        "logger=many",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"alive_at_start": [0, 0, 0, 0]}
    table = report.report(tmp_path, quiet=True)
    assert len(table) == 4
    assert {"optimizer", "regularization"} <= set(table.columns)
    assert (table["status"] == "completed").all()
    assert table["val_acc"].is_monotonic_decreasing
    csv = pd.read_csv(tmp_path / "results.csv")
    assert len(csv) == 4
    assert (tmp_path / "results.md").read_text().count("\n| ") >= 5  # header + 4 rows
    for picture in ("test_accuracy.png", "val_curves.png", "accuracy_heatmap.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"
    assert list(tmp_path.glob("*/tensorboard/events.out.tfevents.*")), "every job logs to TensorBoard"


def test_repeated_seeds_are_configurations_compared_with_the_baseline(synthetic_dir: Path, tmp_path: Path) -> None:
    """-m optimizer=sgd,adam seed=1,2,3: 2 configurations of n=3 with mean ± sd and intervals, the paired
    p-value against the baseline (sgd, the first), and the forest plot; then a run made from other code
    is warned about."""
    sweep(tmp_path, synthetic_dir, "optimizer=sgd,adam", "seed=1,2,3", "callbacks=no_pictures")
    report.report(tmp_path, quiet=True)
    configurations = pd.read_csv(tmp_path / "configurations.csv")
    assert configurations["configuration"].tolist() == ["sgd", "adam"] and configurations["n"].tolist() == [3, 3]
    assert configurations["test acc"].str.fullmatch(r"[\d.]+ ± [\d.]+ \[-?[\d.]+, [\d.]+\]").all()
    adam = configurations.iloc[1]
    assert adam["test"] == "paired t over seeds" and 0 <= float(adam["p (Holm)"]) <= 1 and adam["verdict"]
    assert (tmp_path / "forest.png").read_bytes()[:4] == b"\x89PNG"
    assert "Configurations against the baseline (sgd)" in (tmp_path / "results.md").read_text()

    first = tmp_path / "0" / "metrics.json"
    record = json.loads(first.read_text())
    record["provenance"]["git_commit"] = "0" * 40
    first.write_text(json.dumps(record))
    report.report(tmp_path, quiet=True)
    assert "**Warning:** the runs differ in git_commit" in (tmp_path / "results.md").read_text()


def test_two_runs_compared_image_by_image(synthetic_dir: Path, tmp_path: Path) -> None:
    sweep(tmp_path / "runs", synthetic_dir, "optimizer=sgd,adam", "callbacks=no_pictures")
    result = run_entry_point(
        "emnist_lightning.cli.compare",
        str(tmp_path / "runs" / "0"),
        str(tmp_path / "runs" / "1"),
        f"hydra.run.dir={tmp_path / 'compared'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "McNemar exact p =" in result.stdout and "B - A:" in result.stdout
    for picture in ("per_class_difference.png", "b_right_a_wrong.png"):
        assert (tmp_path / "compared" / picture).read_bytes()[:4] == b"\x89PNG", picture
    assert "| class | B - A (points) |" in (tmp_path / "compared" / "compare.md").read_text()


def test_failed_job_is_reported_and_the_rest_finish(synthetic_dir: Path, tmp_path: Path) -> None:
    sweep(tmp_path, synthetic_dir, "model.hidden_dims=[32,32,32],[32,32]")
    table = report.report(tmp_path, quiet=True)
    assert table["status"].tolist() == ["completed", "failed"]
    failed = table.iloc[1]
    assert "at least 3" in failed["error"]
    assert json.loads((tmp_path / "1" / "metrics.json").read_text())["status"] == "failed"


def test_joblib_launcher_runs_the_jobs_in_worker_processes(synthetic_dir: Path, tmp_path: Path) -> None:
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "num_threads=1", "seed=1,2"]
    sweep(tmp_path, synthetic_dir, *parallel, "callbacks=no_pictures")
    runs = [json.loads((tmp_path / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert all(run["status"] == "completed" for run in runs)
    # callbacks=no_pictures: the jobs draw no pictures, and write everything else
    assert not list(tmp_path.glob("*/*.png")) and all(run["pictures"] == {} for run in runs)
    assert len(list(tmp_path.glob("*/checkpoints/best.ckpt"))) == 2
    assert {path.relative_to(tmp_path).parts[0] for path in tmp_path.glob("*/tensorboard/events.*")} == {"0", "1"}


def test_optuna_preset_searches(synthetic_dir: Path, tmp_path: Path) -> None:
    """python train.py -m hparams_search=mlp_optuna, as the README gives it (tests/test_search.py covers
    pruning, workers and resuming)."""
    sweep_dir = tmp_path / "searches" / "mlp"  # does not exist yet, as on a user's first search
    sweep(
        sweep_dir,
        synthetic_dir,
        "hparams_search=mlp_optuna",
        "hydra.sweeper.n_trials=2",
        "callbacks.test_diagnostics=null",
    )
    with sqlite3.connect(sweep_dir / "optuna.db") as connection:
        states = connection.execute("SELECT state FROM trials ORDER BY number").fetchall()
    assert states == [("COMPLETE",), ("COMPLETE",)]
    assert sorted(report.report(sweep_dir, quiet=True)["trial"]) == [0, 1]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["study"] == "mlp_search" and results["trials"] == {"complete": 2}


def test_a_sweep_chosen_without_dash_m_runs_every_job(synthetic_dir: Path, tmp_path: Path) -> None:
    """sweep=... names a multirun: without -m it would silently train one default run."""
    result = run_entry_point(
        "train.py",
        "sweep=optimizers",
        "hydra.sweeper.params.optimizer='sgd,adam'",  # two of the sweep's seven jobs
        f"data.data_dir={synthetic_dir}",
        f"hydra.sweep.dir={tmp_path}",
        *QUICK,
        "callbacks=no_pictures",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep=optimizers is a sweep: running it as a multirun" in result.stderr
    records = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*/metrics.json"))]
    assert [record["choices"]["optimizer"] for record in records] == ["sgd", "adam"]
    assert all(record["status"] == "completed" for record in records)
