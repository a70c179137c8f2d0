"""The other experiment trackers: a short run with logger=[mlflow,wandb] is read back from each, its
metrics, hyperparameters and pictures; MLflow's default store stays inside the outputs folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_entry_point

mlflow = pytest.importorskip("mlflow", reason="pip install 'emnist-lightning[trackers]' (make install adds it)")
pytest.importorskip("wandb", reason="pip install 'emnist-lightning[trackers]' (make install adds it)")
pytestmark = pytest.mark.slow


def test_mlflow_and_wandb_runs_hold_the_metrics_and_hyperparameters(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs, work = tmp_path / "outputs", tmp_path / "work"
    run_dir, store = outputs / "run", outputs / "mlruns"  # MLflow's default store: beside the runs
    work.mkdir()
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    monkeypatch.setattr(os, "environ", environment)  # run_entry_point passes this process's environment on
    result = run_entry_point(
        "train.py",
        "logger=[mlflow,wandb]",
        "callbacks.test_diagnostics=null",  # the dataset pictures only: they are what the trackers are checked for
        "callbacks.model_pictures=null",
        "model.hidden_dims=[32,32,32]",
        "trainer.max_epochs=2",
        "optimizer.lr=0.002",
        f"data.data_dir={synthetic_dir}",
        f"paths.log_dir={outputs}",
        f"hydra.run.dir={run_dir}",
        cwd=work,
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(work.iterdir()) == []  # nothing written where the command ran
    recorded = json.loads((run_dir / "metrics.json").read_text())

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the run's logger allows it (training/build.py)
    client = mlflow.tracking.MlflowClient(store.as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "emnist-train"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["test/acc"] == pytest.approx(recorded["test_acc"])
    assert float(run.data.params["optimizer.lr"]) == 0.002 and run.data.params["model.hidden_dims"] == "[32, 32, 32]"
    pictures = [artifact.path for artifact in client.list_artifacts(run.info.run_id, "images")]
    assert any("data" in path and "samples" in path for path in pictures), pictures

    from tests.wandb_log import logged  # needs wandb, which may be skipped above

    (offline,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    metrics, config = logged(offline)
    assert metrics["test/acc"] == pytest.approx(recorded["test_acc"]) and len(metrics) > 5
    assert config["optimizer.lr"] == 0.002 and config["data.split"] == "balanced"
    assert metrics["data/samples/_type"] == "images/separated"  # the dataset picture, as W&B keeps images


def test_a_tracker_without_its_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trackers are an extra: a core install asked for one says how to install it."""
    from emnist_lightning.errors import ConfigError
    from emnist_lightning.training import build

    monkeypatch.setattr(build.importlib.util, "find_spec", lambda name: None)
    for make, choice in (
        (lambda: build.mlflow_logger("file:x"), "logger=mlflow"),
        (build.wandb_logger, "logger=wandb"),
    ):
        with pytest.raises(ConfigError, match=rf"{choice} needs \w+: pip install 'emnist-lightning\[trackers\]'"):
            make()
