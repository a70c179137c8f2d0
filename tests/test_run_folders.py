"""A run folder has one owner: a folder holding a run in any state (killed, failed, running) or another
sweep is refused unless overwrite=true (a sweep launched again into its own folder continues it), a folder
in use by another process is refused even then, and a sweep's exit status counts only the jobs it ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from filelock import FileLock

from emnist_lightning.runs.ownership import LOCK_FILE
from tests.conftest import run_entry_point, script_module

pytestmark = pytest.mark.slow

QUICK = ["model=mlp", "model.hidden_dims=[32,32,32]", "trainer.max_epochs=1", "callbacks=no_pictures"]


def train(data_dir: Path, *overrides: str):
    flags = [argument for argument in overrides if argument == "-m"]  # Hydra's flags come first
    arguments = [argument for argument in overrides if argument != "-m"]
    return run_entry_point("train.py", *flags, f"data.data_dir={data_dir}", *QUICK, *arguments)


def one_line_error(result) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[-1]


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def killed_run(folder: Path) -> Path:
    """What a run killed mid-training leaves: its config, a last.ckpt, no metrics.json."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights of epoch 3")
    return folder


@pytest.mark.parametrize("state", ["killed", "failed", "pruned"])
def test_a_folder_holding_a_run_in_any_state_is_refused(synthetic_dir: Path, tmp_path: Path, state: str) -> None:
    folder = killed_run(tmp_path / "run")
    if state != "killed":
        (folder / "metrics.json").write_text(json.dumps({"status": state}))
    before = contents(folder)
    line = one_line_error(train(synthetic_dir, f"hydra.run.dir={folder}"))
    assert "overwrite=true" in line and ("stopped without a record" in line if state == "killed" else state in line)
    if state == "killed":
        assert "resume it with resume=" in line
    assert contents(folder) == before


def test_a_folder_in_use_is_refused_even_with_overwrite_and_even_to_a_resume(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    folder = killed_run(tmp_path / "run")
    (folder / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    before = contents(folder)
    with FileLock(folder / LOCK_FILE):  # a run (or a resume) writing there now
        for overrides in ([f"hydra.run.dir={folder}", "overwrite=true"], [f"resume={folder}"]):
            result = run_entry_point("train.py", *overrides)
            assert "in use" in one_line_error(result)
    assert {name: data for name, data in contents(folder).items() if name != LOCK_FILE} == before


def test_a_sweep_launched_again_skips_finished_jobs_continues_stopped_ones_and_refuses_another_sweep(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    assert train(synthetic_dir, "-m", f"hydra.sweep.dir={tmp_path}", "optimizer=sgd,adam").returncode == 0
    finished = (tmp_path / "0" / "metrics.json").read_bytes()
    (tmp_path / "1" / "metrics.json").unlink()  # job 1 killed after its last checkpoint, before its record
    # the interrupted sweep launched again, grown by a job at the end
    again = train(synthetic_dir, "-m", f"hydra.sweep.dir={tmp_path}", "optimizer=sgd,adam,adamw")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sweep: 3 jobs, 1 finished earlier (skipped), 2 to run" in again.stdout + again.stderr
    assert (tmp_path / "0" / "metrics.json").read_bytes() == finished, "a finished job ran again"
    assert "Continuing from" in (tmp_path / "1" / "train.log").read_text()
    for job in ("1", "2"):
        assert json.loads((tmp_path / job / "metrics.json").read_text())["status"] == "completed"
    # another sweep in the same folder: refused before anything is written
    before = contents(tmp_path)
    line = one_line_error(train(synthetic_dir, "-m", f"hydra.sweep.dir={tmp_path}", "optimizer=sgd,rmsprop"))
    assert "holds an earlier sweep whose job 1 ran" in line and "overwrite=true" in line
    assert contents(tmp_path) == before
    # replaced on purpose, with jobs that all fail: the old completed records no longer hide it
    replaced = train(
        synthetic_dir, "-m", f"hydra.sweep.dir={tmp_path}", "optimizer=sgd,adam", "overwrite=true", "optimizer.lr=-1"
    )
    assert replaced.returncode == 1 and "all 2 jobs of the sweep" in replaced.stderr


def test_a_sweep_continues_in_a_folder_restored_from_its_kept_records(synthetic_dir: Path, tmp_path: Path) -> None:
    """A study stopped on one machine goes on on another from the records the repository keeps."""
    first, restored, records = tmp_path / "first", tmp_path / "restored", tmp_path / "records.jsonl"
    assert train(synthetic_dir, "-m", f"hydra.sweep.dir={first}", "optimizer=sgd,adam").returncode == 0
    (first / "1" / "metrics.json").unlink()  # job 1 had not finished when the records were kept
    study_records = script_module("study_records")
    study_records.keep(first, records)
    assert study_records.restore(records, restored) == 1
    kept = json.loads((restored / "0" / "metrics.json").read_text())
    again = train(synthetic_dir, "-m", f"hydra.sweep.dir={restored}", "optimizer=sgd,adam")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sweep: 2 jobs, 1 finished earlier (skipped), 1 to run" in again.stdout + again.stderr
    assert json.loads((restored / "0" / "metrics.json").read_text()) == kept, "a kept job ran again"
    assert json.loads((restored / "1" / "metrics.json").read_text())["status"] == "completed"
