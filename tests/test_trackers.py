"""The other experiment trackers: a short run with logger=[mlflow,wandb] is read back from each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_entry_point

mlflow = pytest.importorskip("mlflow", reason="pip install 'emnist-lightning[trackers]' (make install adds it)")
pytest.importorskip("wandb", reason="pip install 'emnist-lightning[trackers]' (make install adds it)")
pytestmark = pytest.mark.slow


def test_mlflow_and_wandb_runs_hold_the_metrics_and_hyperparameters(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, store = tmp_path / "run", tmp_path / "mlruns"
    result = run_entry_point(
        "train.py",
        "logger=[mlflow,wandb]",
        "callbacks=no_pictures",
        "model.hidden_dims=[32,32,32]",
        "trainer.max_epochs=2",
        "optimizer.lr=0.002",
        f"data.data_dir={synthetic_dir}",
        f"hydra.run.dir={run_dir}",
        env={"MLFLOW_TRACKING_URI": store.as_uri(), "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((run_dir / "metrics.json").read_text())

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the run's logger allows it (training/build.py)
    client = mlflow.tracking.MlflowClient(store.as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "emnist-train"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["test/acc"] == pytest.approx(recorded["test_acc"])
    assert float(run.data.params["optimizer.lr"]) == 0.002 and run.data.params["model.hidden_dims"] == "[32, 32, 32]"

    from tests.wandb_log import logged  # needs wandb, which may be skipped above

    (offline,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    metrics, config = logged(offline)
    assert metrics["test/acc"] == pytest.approx(recorded["test_acc"]) and len(metrics) > 5
    assert config["optimizer.lr"] == 0.002 and config["data.split"] == "balanced"
