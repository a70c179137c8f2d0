"""The sweep report on folders it is pointed at: sweeps, single runs, and keys set in only some jobs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emnist_lightning.analysis import report
from emnist_lightning.errors import ConfigError
from tests.conftest import fake_job, run_entry_point, script_module


def test_report_compares_a_folder_of_single_runs(tmp_path: Path) -> None:
    fake_job(tmp_path / "2026-11-25_10-00-00-000001", [], 0.80)
    fake_job(tmp_path / "2026-11-25_11-00-00-000002", [], 0.85)
    table = report.report(tmp_path, quiet=True)
    assert table["job"].tolist() == ["2026-11-25_11-00-00-000002", "2026-11-25_10-00-00-000001"]
    for picture in ("test_accuracy.png", "val_curves.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"


def test_a_key_set_in_only_some_jobs_is_varied(tmp_path: Path) -> None:
    fake_job(tmp_path / "0", ["optimizer=adam"], 0.80)
    fake_job(tmp_path / "1", ["optimizer=adam", "model.dropout=0.2"], 0.82)
    table = report.report(tmp_path, quiet=True)
    assert "model.dropout" in table.columns and "optimizer" not in table.columns


def test_a_job_that_leaves_a_varied_key_unset_is_labelled_by_the_keys_it_sets(tmp_path: Path) -> None:
    fake_job(tmp_path / "0", [], 0.80)
    fake_job(tmp_path / "1", ["model.dropout=0.2"], 0.81)
    fake_job(tmp_path / "2", ["model.dropout=0.2", "augment=none"], 0.82)
    frame, varied, _ = report.collect(tmp_path)
    labels = {row["job"]: report.configuration_label(row, varied) for _, row in frame.iterrows()}
    assert labels == {"0": "no overrides", "1": "dropout=0.2", "2": "dropout=0.2, augment=none"}
    assert report.configuration_label(frame.set_index("job").loc["0"], ["model.dropout"]) == "unset"


def test_report_on_a_folder_without_runs_says_what_it_expects(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no finished jobs under .*pass a sweep dir.*folder of runs"):
        report.report(tmp_path, quiet=True)


def test_the_report_command_takes_the_sweep_dir_as_its_argument(tmp_path: Path) -> None:
    """`emnist-report <dir>` as a user types it: the table, the files, and no .hydra/ that would look like a job."""
    fake_job(tmp_path / "0", ["optimizer=adam", "model.hidden_dims=[64,64,64]"], 0.80)
    fake_job(tmp_path / "1", ["optimizer=sgd", "model.hidden_dims=[64,64,64]"], 0.75)
    result = run_entry_point("emnist_lightning.cli.report", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "adam" in result.stdout and (tmp_path / "results.csv").is_file()
    assert not (tmp_path / ".hydra").exists()
    assert report.report(tmp_path, quiet=True)["optimizer"].tolist() == ["adam", "sgd"]


def test_the_report_command_on_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = run_entry_point("emnist_lightning.cli.report", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: '{tmp_path / 'nowhere'}' is not a folder; {report.SWEEP_DIR_HINT}"
    ]
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("content", ["", '{"status": ', "[1, 2]"])
def test_a_broken_metrics_file_is_a_broken_job_not_a_crash(tmp_path: Path, content: str) -> None:
    fake_job(tmp_path / "0", ["optimizer=adam"], 0.80)
    fake_job(tmp_path / "1", ["optimizer=sgd"], 0.82)
    (tmp_path / "1" / "metrics.json").write_text(content)
    table = report.report(tmp_path, quiet=True).set_index("job")
    assert table.loc["1", "status"] == "broken" and "unreadable" in table.loc["1", "error"]
    assert table.loc["0", "status"] == "completed"
    assert sorted(path.name for path in (tmp_path / "0").iterdir()) == [".hydra", "metrics.json"]  # no temporary file


def test_a_budget_sweep_compares_each_technique_with_the_baseline_at_its_own_budget(tmp_path: Path) -> None:
    # the technique costs 1 point at 3 epochs and gains 1 at 10; the baseline gains 2 points with the budget
    job = 0
    for epochs, effect in ((3, -0.01), (10, 0.01)):
        for technique in ("baseline", "ema"):
            for seed, noise in enumerate((0.0, 0.002, -0.001, 0.001, -0.002), start=1):
                accuracy = 0.80 + (0.02 if epochs == 10 else 0) + (effect if technique == "ema" else 0) + noise
                overrides = [f"trainer.max_epochs={epochs}", f"technique={technique}", f"seed={seed}"]
                fake_job(tmp_path / str(job), overrides, accuracy + (seed % 2) * 1e-4 * (technique == "ema"))
                job += 1
    report.report(tmp_path, quiet=True, budget_key="trainer.max_epochs")
    compared = pd.read_csv(tmp_path / "budgets.csv").set_index("trainer.max_epochs")
    assert compared.loc[3, "difference"] == pytest.approx(-0.01, abs=1e-3) and compared.loc[3, "verdict"] == "hurts"
    assert compared.loc[10, "difference"] == pytest.approx(0.01, abs=1e-3) and compared.loc[10, "verdict"] == "helps"
    assert (tmp_path / "budgets.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="budget_key=data.split is not a key the sweep varies"):
        report.report(tmp_path, quiet=True, budget_key="data.split")


def test_the_steps_table_pairs_each_step_with_its_base_over_seeds(tmp_path: Path) -> None:
    """scripts/study_table.py --steps: sweeps in folders (scripts/speedrun_steps.sh), each step's validation
    accuracy against the step it changes, paired by seed."""
    study_table = script_module("study_table")
    for seed, noise in zip((1, 2, 3), (0.0, 0.004, -0.002), strict=True):
        fake_job(tmp_path / "base" / str(seed), [f"seed={seed}"], 0.80 + noise)
        fake_job(tmp_path / "step" / str(seed), ["model.dropout=0.0", f"seed={seed}"], 0.81 + noise + seed / 1000)
    table = study_table.steps_table(tmp_path, ["step:base"]).splitlines()
    assert table[2].startswith("| `base` |") and "| 80.07 |" in table[2]
    step = table[3]
    assert step.startswith("| `step` (on `base`) |") and "| 81.27 |" in step
    assert "+1.20 [+0.95, +1.45]" in step, "the paired differences 1.1, 1.2, 1.3 points: t-interval on 2 df"
