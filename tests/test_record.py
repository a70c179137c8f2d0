"""metrics.json through its one owner, RunRecord, and what a full disk does to it and to checkpoints."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from emnist_lightning.analysis.predictions import HeldOutPredictions
from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.models import write_classes
from emnist_lightning.runs import task
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.provenance import git_state
from emnist_lightning.runs.record import METRICS_FILE, OVERRIDES_FILE, RunRecord, recorded_overrides, stage_metrics
from emnist_lightning.runs.resume import sweep_progress
from emnist_lightning.training.build import AtomicCheckpointIO


def test_record_round_trips_and_leaves_out_absent_values(tmp_path: Path) -> None:
    context = RunContext(tmp_path, choices={"model": "mlp"}, overrides=["model=mlp"])
    record = RunRecord.of_run(context, "completed", val_acc=0.5, history={"val/acc": [0.4, 0.5]}, epochs=2)
    record.write(tmp_path)
    written = json.loads((tmp_path / METRICS_FILE).read_text())
    assert written["status"] == "completed" and written["choices"] == {"model": "mlp"}
    assert "test_acc" not in written and "error" not in written
    assert written["peak_rss_mb"] > 0
    assert RunRecord.read(tmp_path) == record


def test_reading_tolerates_unknown_keys_and_missing_files(tmp_path: Path) -> None:
    assert RunRecord.read(tmp_path) is None  # the run has not finished
    (tmp_path / METRICS_FILE).write_text(json.dumps({"status": "failed", "error": "boom", "from_the_future": 1}))
    record = RunRecord.read(tmp_path)
    assert record.status == "failed" and record.error == "boom" and not record.completed


def write_overrides(job_dir: Path, text: str) -> None:
    (job_dir / OVERRIDES_FILE).parent.mkdir(parents=True)
    (job_dir / OVERRIDES_FILE).write_text(text)


def test_recorded_overrides_are_a_list_of_strings_or_one_clear_error(tmp_path: Path) -> None:
    write_overrides(tmp_path / "good", "- optimizer=adam\n- seed=2\n")
    assert recorded_overrides(tmp_path / "good") == ["optimizer=adam", "seed=2"]
    write_overrides(tmp_path / "empty", "")
    assert recorded_overrides(tmp_path / "empty") == []
    for name, text, problem in (
        ("bad-yaml", "- [unclosed\n", "is unreadable (ParserError)"),
        ("mapping", "optimizer: adam\n", "is not a list of overrides"),
        ("numbers", "- 1\n", "is not a list of overrides"),
    ):
        write_overrides(tmp_path / name, text)
        with pytest.raises(ConfigError, match=re.escape(f"{name}/.hydra/overrides.yaml {problem}")):
            recorded_overrides(tmp_path / name)
    with pytest.raises(ConfigError, match=re.escape("absent/.hydra/overrides.yaml is unreadable (FileNotFoundError)")):
        recorded_overrides(tmp_path / "absent")


def test_a_sweep_folder_with_a_damaged_job_is_refused_in_one_line(tmp_path: Path) -> None:
    """Launching a sweep again reads its earlier jobs' overrides: a damaged file is named, with the fix."""
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"params": {"seed": "1,2"}}, "overrides": {"task": []}}}
    )
    write_overrides(tmp_path / "0", "- seed=1\n")
    assert sweep_progress(config, check_earlier=True).planned == 2
    write_overrides(tmp_path / "1", "seed: [2\n")
    with pytest.raises(ConfigError) as refused:
        sweep_progress(config, check_earlier=True)
    message = str(refused.value)
    assert "1/.hydra/overrides.yaml is unreadable" in message and "overwrite=true" in message
    assert "\n" not in message


def test_stage_metrics_become_record_fields() -> None:
    results = [{"test/acc": 0.9, "test/macro_acc": 0.8, "test/loss": 0.3, "test/ece": 0.02, "val/acc": 0.1}]
    fields = stage_metrics(results, "test")
    assert fields == {"test_acc": 0.9, "test_macro_acc": 0.8, "test_loss": 0.3, "test_ece": 0.02}
    assert RunRecord("completed", **fields).test_ece == 0.02


def full_disk(*args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_keeps_the_previous_record_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = RunContext(tmp_path)
    RunRecord.of_run(context, "completed", val_acc=0.5).write(tmp_path)
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        RunRecord.of_run(context, "failed", error="later").write(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [METRICS_FILE]
    assert RunRecord.read(tmp_path).status == "completed"


@pytest.mark.parametrize("multirun", [True, False])
def test_a_failure_record_that_cannot_be_written_does_not_hide_the_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    multirun: bool,
) -> None:
    """In a sweep the job still ends as failed (so the sweep goes on); alone, the run's own error is the one line."""
    monkeypatch.setattr(RunContext, "from_hydra", classmethod(lambda cls, cfg: RunContext(tmp_path, multirun=multirun)))
    monkeypatch.setattr(task, "configure_host", lambda cfg: None)
    monkeypatch.setattr(RunRecord, "write", full_disk)

    def broken_task(cfg: object, context: RunContext) -> float:
        raise ConfigError("model.hidden_dims=[] needs three or more layers")

    if multirun:
        assert task.run_task(broken_task, OmegaConf.create({})) is None
    else:
        with pytest.raises(SystemExit) as ended:
            task.run_task(broken_task, OmegaConf.create({}))
        assert ended.value.code == 1
        assert capsys.readouterr().err.strip() == "error: model.hidden_dims=[] needs three or more layers"
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "model.hidden_dims=[] needs three or more layers" in logged and "No space left" in logged


def test_a_checkpoint_cut_short_by_a_full_disk_leaves_the_previous_one_and_no_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, last)
    before = last.read_bytes()

    def save_half_then_fill_the_disk(checkpoint: object, file: BinaryIO) -> None:
        file.write(b"half a checkpoint")
        full_disk()

    monkeypatch.setattr(torch, "save", save_half_then_fill_the_disk)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2}, last)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.ckpt"]
    assert last.read_bytes() == before


def test_test_predictions_and_model_json_are_replaced_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both used to be written in place: a process killed mid-write left half a file under the real name.
    Now the real file changes only at the final rename, so one that never comes leaves it as it was."""
    path = HeldOutPredictions(np.array([0, 1]), np.array([0, 0]), ("a", "b")).save(tmp_path)
    classes = write_classes(tmp_path / "model.onnx", ("a", "b"))
    before = {path: path.read_bytes(), classes: classes.read_bytes()}
    monkeypatch.setattr(os, "replace", full_disk)  # the process dies before the rename
    with pytest.raises(OSError, match="No space left"):
        HeldOutPredictions(np.array([1, 1]), np.array([1, 1]), ("a", "b")).save(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        write_classes(tmp_path / "model.onnx", ("x", "y"))
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in before)


def test_a_durable_write_syncs_its_folder_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    RunRecord.of_run(RunContext(tmp_path), "completed").write(tmp_path)
    assert synced[-1] == str(tmp_path)  # after the file itself, its folder: the rename is on disk
    assert any(name.endswith(".partial") for name in synced[:-1])


def test_a_process_records_the_commit_it_loaded_not_one_made_while_it_runs(tmp_path: Path) -> None:
    def commit(message: str) -> str:
        git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org"]
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], check=True)
        return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    loaded = commit("the code a sweep starts with")
    assert git_state(tmp_path) == {"git_commit": loaded, "git_dirty": False}
    assert commit("committed while the sweep runs") != loaded
    assert git_state(tmp_path)["git_commit"] == loaded
