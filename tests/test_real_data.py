"""Real EMNIST: runs when EMNIST_DATA_DIR points at the Balanced files (CI sets it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_entry_point

DATA_DIR = os.environ.get("EMNIST_DATA_DIR")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_data,
    pytest.mark.skipif(not DATA_DIR, reason="set EMNIST_DATA_DIR to a folder with the EMNIST Balanced files"),
]


def test_default_mlp_one_epoch_learns(tmp_path: Path) -> None:
    result = run_entry_point(
        "train.py",
        f"data.data_dir={DATA_DIR}",
        "data.download=false",
        f"hydra.run.dir={tmp_path}",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_acc"] > 0.70, metrics
    assert metrics["test_macro_acc"] > 0.65, metrics
