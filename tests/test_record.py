"""metrics.json through its one owner, RunRecord."""

from __future__ import annotations

import json
from pathlib import Path

from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.record import METRICS_FILE, RunRecord, stage_metrics


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


def test_stage_metrics_become_record_fields() -> None:
    results = [{"test/acc": 0.9, "test/macro_acc": 0.8, "test/loss": 0.3, "test/ece": 0.02, "val/acc": 0.1}]
    fields = stage_metrics(results, "test")
    assert fields == {"test_acc": 0.9, "test_macro_acc": 0.8, "test_loss": 0.3, "test_ece": 0.02}
    assert RunRecord("completed", **fields).test_ece == 0.02
