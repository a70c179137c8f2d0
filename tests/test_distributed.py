"""Beyond one process: DDP on the CPU (2 processes over gloo) and sweeps through submitit's launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emnist_lightning.analysis import report
from tests.conftest import run_entry_point

pytestmark = pytest.mark.slow

RUN = [
    "model=mlp",
    "model.hidden_dims=[64,64,64]",
    "data.batch_size=64",
    "trainer.max_epochs=3",
    "callbacks.progress_bar=null",
]


def train(run_dir: Path, data_dir: Path, *overrides: str) -> dict:
    result = run_entry_point("train.py", f"data.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *RUN, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def test_ddp_on_two_cpu_processes_matches_one_process(synthetic_dir: Path, tmp_path: Path) -> None:
    """The same global batch split over 2 processes: both train, the run's files are written once, and its
    accuracy is that of one process (the shards' gradients average to the whole batch's)."""
    single = train(tmp_path / "single", synthetic_dir)
    ddp_dir = tmp_path / "ddp"
    ddp = train(ddp_dir, synthetic_dir, "trainer=ddp_cpu")
    assert (ddp_dir / "train_ddp_process_1.log").is_file(), "the second process did not run"
    assert ddp["status"] == "completed" and ddp["epochs"] == 3
    assert ddp["val_acc"] == pytest.approx(single["val_acc"], abs=0.01)
    assert ddp["test_acc"] == pytest.approx(single["test_acc"], abs=0.01)
    assert sorted(path.name for path in (ddp_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not list(ddp_dir.rglob("*.tmp")) and not list(ddp_dir.rglob(".*.partial"))
    assert [path.name for path in (ddp_dir / "tensorboard").iterdir() if path.is_dir()] == [], "one log"
    for picture in ("confusion_matrix.png", "dataset_samples.png", "model_first_layer.png"):
        assert (ddp_dir / picture).read_bytes()[:4] == b"\x89PNG"
    per_class = (ddp_dir / "per_class_metrics.csv").read_text().splitlines()
    assert sum(int(line.split(",")[1]) for line in per_class[1:]) == 47 * 6, "the test report saw every test image"


def test_ddp_is_refused_inside_a_local_sweep(synthetic_dir: Path, tmp_path: Path) -> None:
    result = run_entry_point(
        "train.py", "-m", f"data.data_dir={synthetic_dir}", f"hydra.sweep.dir={tmp_path}", *RUN, "trainer=ddp_cpu"
    )
    assert result.returncode == 1
    assert "cannot run inside a local -m sweep" in json.loads((tmp_path / "0" / "metrics.json").read_text())["error"]


def test_submitit_local_launcher_runs_a_sweep(synthetic_dir: Path, tmp_path: Path) -> None:
    result = run_entry_point(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        f"data.data_dir={synthetic_dir}",
        f"hydra.sweep.dir={tmp_path}",
        *RUN,
        "optimizer=sgd,adam",
        "trainer.max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / ".submitit").iterdir()), "the jobs did not go through submitit"
    table = report.report(tmp_path, quiet=True)
    assert sorted(table["optimizer"]) == ["adam", "sgd"]
    assert (table["status"] == "completed").all()
