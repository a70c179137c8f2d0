"""The study's sweeps (conf/sweep/study_*.yaml, ladder_*.yaml) hold what they promise: every configuration the
study is about, 5 seeds or more of each, paired over the same seeds, at the stated budget; and their finished
jobs, kept in the repository (scripts/study_records.py), come back as jobs of the sweep."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from emnist_lightning.analysis.report import collect
from emnist_lightning.data import SPLITS
from emnist_lightning.runs.config import compose
from emnist_lightning.training.build import build_model
from tests.conftest import REPO_ROOT, fake_job, script_module, sweep_jobs

STUDY_RECORDS = script_module("study_records")
SEEDS = 5
CNN_EPOCHS = 16  # the CNN study's budget (docs/results.md: within 0.3 points of 32, where 8 are not)
# what each study compares with its family's default (the baseline: cosine schedule, relu, Adam, no
# batch norm, L1, L2 or dropout for the MLP)
MLP_STUDY = {
    "schedules": {"constant_lr", "step_lr", "plateau_lr", "exponential_lr", "onecycle"},
    "activations": {"leaky_relu", "gelu", "tanh", "sigmoid"},
    "optimizers": {"sgd", "momentum", "adamw", "rmsprop"},
    "batch norm, penalties, dropout": {"batch_norm", "l1", "l2", "l1_l2", "dropout", "batch_norm_dropout"},
    "stronger": {"shift", "affine", "elastic", "erasing", "label_smoothing", "ema", "mixup", "cutmix"},
    "depth and width": {"deeper", "wider"},
}
# the CNN's baseline has batch norm and head dropout: the study takes them away, alone and together
CNN_STUDY = {
    "schedules": {"constant_lr", "step_lr", "plateau_lr", "onecycle"},  # exponential_lr: the MLP study's extra
    **{group: MLP_STUDY[group] for group in ("activations", "optimizers", "stronger")},
    "batch norm, penalties, dropout": {"no_batch_norm", "l1", "l2", "l1_l2", "no_dropout", "no_batch_norm_no_dropout"},
    "channels and blocks": {"more_channels", "more_blocks"},
}


def seeds_by(jobs: list[dict[str, str]], *keys: str) -> dict[tuple[str, ...], set[str]]:
    seeds = defaultdict(set)
    for job in jobs:
        seeds[tuple(job[key] for key in keys)].add(job["seed"])
    return seeds


@pytest.mark.parametrize(
    ("sweep", "study", "network", "epochs"),
    [("study_mlp", MLP_STUDY, "mlp", 10), ("study_cnn", CNN_STUDY, "cnn", CNN_EPOCHS)],
)
def test_a_study_runs_every_technique_5_seeds_at_its_stated_budget(
    tmp_path: Path, sweep: str, study: dict[str, set[str]], network: str, epochs: int
) -> None:
    jobs = sweep_jobs(compose("train", [f"sweep={sweep}"], tmp_path))
    assert jobs[0]["technique"] == "baseline", "the report compares with the sweep's first configuration"
    seeds = seeds_by(jobs, "technique")
    for group, techniques in study.items():
        assert techniques <= {technique for (technique,) in seeds}, group
    assert {len(each) for each in seeds.values()} == {SEEDS}
    assert len(set(map(frozenset, seeds.values()))) == 1, "every configuration ran the baseline's seeds"
    # each job's model, loss and mixing built as train.py builds them, and its network reads a batch: a
    # technique that does not fit its family fails here, not hours into the study
    split = SPLITS["balanced"]
    datamodule = SimpleNamespace(split=split, classes=split.classes)
    for (technique,) in seeds:
        job = compose("train", [f"sweep={sweep}", f"technique={technique}", "seed=3"], tmp_path)
        assert job.trainer.max_epochs == epochs and job.model.network == network, technique
        model = build_model(job, datamodule)  # type: ignore[arg-type]
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, len(split.classes)), technique
    mixup = compose("train", [f"sweep={sweep}", "technique=mixup"], tmp_path)
    assert mixup.mixing._target_.endswith("Mixup")


def test_the_cnn_studys_techniques_change_the_study_network(tmp_path: Path) -> None:
    baseline = flat(tmp_path, "sweep=study_cnn")
    for technique in sorted(CNN_STUDY["batch norm, penalties, dropout"] | CNN_STUDY["channels and blocks"]):
        assert flat(tmp_path, "sweep=study_cnn", f"technique={technique}") != baseline, f"{technique} changes nothing"


def test_the_budget_sweep_compares_the_budget_sensitive_techniques_at_3_or_more_budgets(tmp_path: Path) -> None:
    jobs = sweep_jobs(compose("train", ["sweep=study_mlp_budgets"], tmp_path))
    seeds = seeds_by(jobs, "trainer.max_epochs", "technique")
    budgets = {budget for budget, _ in seeds}
    assert len(budgets) >= 3
    for budget in budgets:
        assert {"baseline", "ema", "shift", "dropout"} <= {name for each, name in seeds if each == budget}
    assert {len(each) for each in seeds.values()} == {SEEDS}


def flat(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose("train", list(overrides), tmp_path)
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)


@pytest.mark.parametrize(
    ("sweep", "default", "preset"), [("ladder_mlp", [], "mlp_best"), ("ladder_cnn", ["model=cnn"], "cnn_best")]
)
def test_a_ladder_goes_from_the_default_to_the_best_preset_one_change_at_a_time(
    tmp_path: Path, sweep: str, default: list[str], preset: str
) -> None:
    jobs = sweep_jobs(compose("train", [f"sweep={sweep}"], tmp_path))
    steps = list(dict.fromkeys(job["ladder"] for job in jobs))
    assert {len(each) for each in seeds_by(jobs, "ladder").values()} == {SEEDS}
    configs = [flat(tmp_path, f"ladder={step}") for step in steps]
    assert configs[0] == flat(tmp_path, *default), "the first step is the family's default configuration"
    assert configs[-1] == flat(tmp_path, f"experiment={preset}"), "the last step is the preset"
    for before, after, step in zip(configs, configs[1:], steps[1:], strict=False):
        assert before != after, f"{step} changes nothing"


@pytest.mark.parametrize("sweep", ["study_cnn", "ladder_cnn"])
def test_a_study_that_spans_machines_computes_in_one_precision_on_all(tmp_path: Path, sweep: str) -> None:
    for job in sweep_jobs(compose("train", [f"sweep={sweep}"], tmp_path))[::7]:
        composed = compose("train", [f"sweep={sweep}", *(f"{key}={value}" for key, value in job.items())], tmp_path)
        assert composed.trainer.precision == "32-true", job


@pytest.mark.parametrize("sweep", ["study_mlp", "study_mlp_budgets", "ladder_mlp", "study_cnn", "ladder_cnn"])
def test_a_study_states_its_cost_per_job(tmp_path: Path, sweep: str) -> None:
    assert compose("train", [f"sweep={sweep}"], tmp_path).study.seconds_per_job > 0


@pytest.mark.parametrize(
    ("family", "sweeps"),
    [("mlp", ["study_mlp", "study_mlp_budgets", "ladder_mlp"]), ("cnn", ["study_cnn", "ladder_cnn"])],
)
def test_the_study_script_runs_each_of_its_familys_sweeps_then_its_report(family: str, sweeps: list[str]) -> None:
    printed = run_study_script(family).stdout.splitlines()
    runs = [line.split() for line in printed if " train.py " in f" {line} "]
    assert [run[2] for run in runs] == [f"sweep={sweep}" for sweep in sweeps]
    reports = [line for line in printed if "emnist_lightning.cli.report" in line]
    assert len(reports) == len(sweeps), "every sweep is followed by its report"


def test_the_study_script_restores_and_keeps_each_sweeps_records_where_asked(tmp_path: Path) -> None:
    (tmp_path / "cnn.jsonl").write_text("")  # the study's records, kept by an earlier stretch; none of the ladder's
    printed = run_study_script("cnn", records=tmp_path).stdout.splitlines()
    steps = [" ".join(line.split()[:3]) for line in printed]
    assert steps[:4] == [
        "scripts/study_records.py restore " + str(tmp_path / "cnn.jsonl"),
        "train.py -m sweep=study_cnn",
        "scripts/study_records.py keep outputs/study/cnn",
        "-m emnist_lightning.cli.report sweep_dir=outputs/study/cnn",
    ]
    assert steps[4:] == [
        "train.py -m sweep=ladder_cnn",
        "scripts/study_records.py keep outputs/study/ladder_cnn",
        "-m emnist_lightning.cli.report sweep_dir=outputs/study/ladder_cnn",
    ], "no records of the ladder yet: nothing to restore"


def test_a_stopped_sweep_keeps_what_finished_and_ends_the_study_with_its_status(tmp_path: Path) -> None:
    python = tmp_path / "python"  # prints each command; train.py stops as an interrupted sweep does
    python.write_text('#!/bin/sh\necho "$@"\ncase "$1" in train.py) exit 3;; esac\n')
    python.chmod(0o755)
    finished = run_study_script("cnn", check=False, records=tmp_path, python=str(python))
    assert finished.returncode == 3
    assert [line.split()[0:2] for line in finished.stdout.splitlines()] == [
        ["train.py", "-m"],
        ["scripts/study_records.py", "keep"],
    ], "kept, then no report and no further sweep"


def test_the_study_script_refuses_a_family_it_has_no_study_for() -> None:
    finished = run_study_script("resnet", check=False)
    assert finished.returncode == 2
    assert "pass mlp or cnn" in finished.stderr and finished.stdout == ""


def run_study_script(
    family: str, check: bool = True, records: Path | None = None, python: str = "echo"
) -> subprocess.CompletedProcess[str]:
    """study.sh with PYTHON=echo: each command printed instead of run."""
    return subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "study.sh"), family],
        env={"PATH": "/usr/bin:/bin", "PYTHON": python, **({"STUDY_RECORDS": str(records)} if records else {})},
        capture_output=True,
        text=True,
        check=check,
    )


def test_kept_records_come_back_as_jobs_the_report_reads_as_the_sweeps_own(tmp_path: Path) -> None:
    sweep, records = tmp_path / "sweep", tmp_path / "records" / "study.jsonl"
    fake_job(sweep / "0", ["technique=baseline", "seed=1"], 0.8)
    fake_job(sweep / "1", ["technique=baseline", "seed=2"], 0.82)
    fake_job(sweep / "2", ["technique=ema", "seed=1"], 0.8, status="interrupted")
    (sweep / "3" / ".hydra").mkdir(parents=True)  # running: no record yet
    assert STUDY_RECORDS.keep(sweep, records) == 2
    assert STUDY_RECORDS.keep(sweep, records) == 0, "a job kept once is not added again"
    restored = tmp_path / "restored"
    assert STUDY_RECORDS.restore(records, restored) == 2
    assert sorted(path.name for path in restored.iterdir()) == ["0", "1"]
    original, _, _ = collect(sweep)
    again, _, _ = collect(restored)
    columns = ["job", "technique", "seed", "status", "val_acc", "test_acc", "test_macro_acc", "history"]
    assert again[columns].equals(original[original.status == "completed"][columns].reset_index(drop=True))


def test_records_are_never_replaced_nor_mixed_with_another_sweeps(tmp_path: Path) -> None:
    sweep, records = tmp_path / "sweep", tmp_path / "study.jsonl"
    fake_job(sweep / "0", ["technique=baseline", "seed=1"], 0.8)
    STUDY_RECORDS.keep(sweep, records)
    kept = records.read_bytes()
    other = tmp_path / "other"
    fake_job(other / "0", ["technique=ema", "seed=1"], 0.8)
    with pytest.raises(STUDY_RECORDS.RecordsError, match="holds job 0 of another sweep"):
        STUDY_RECORDS.keep(other, records)
    assert records.read_bytes() == kept
    before = (other / "0" / "metrics.json").read_bytes()
    assert STUDY_RECORDS.restore(records, other) == 0, "a job folder that exists is left as it is"
    assert (other / "0" / "metrics.json").read_bytes() == before


@pytest.mark.parametrize(
    ("command", "contents", "message"),
    [
        ("restore", None, "no such records file"),
        ("restore", '{"job": "0", "overrides": ["seed=1"], "metrics": {"status": "failed"}}', "line 1: not a"),
        ("restore", '{"job": "../x", "overrides": [], "metrics": {"status": "completed"}}', "line 1: not a"),
        ("restore", '{"job": 7, "overrides": [], "metrics": {"status": "completed"}}', "line 1: not a"),
        ("restore", "not json", "line 1: not a completed job's record"),
        ("keep", None, "no such sweep folder"),
    ],
)
def test_a_records_file_or_folder_that_cannot_be_used_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, contents: str | None, message: str
) -> None:
    records = tmp_path / "study.jsonl"
    if contents is not None:
        records.write_text(contents + "\n")
    arguments = [records, tmp_path / "sweep"] if command == "restore" else [tmp_path / "missing", records]
    assert STUDY_RECORDS.main([command, *map(str, arguments)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("study_records.py: ") and message in error and "\n" not in error
    assert not (tmp_path / "sweep").exists()


def test_keeping_a_sweep_with_a_damaged_job_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_job(tmp_path / "sweep" / "0", ["technique=baseline", "seed=1"], 0.8)
    (tmp_path / "sweep" / "0" / ".hydra" / "overrides.yaml").write_text("seed: [\n")
    records = tmp_path / "study.jsonl"
    assert STUDY_RECORDS.main(["keep", str(tmp_path / "sweep"), str(records)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("study_records.py: ") and "0/.hydra/overrides.yaml is unreadable" in error
    assert "\n" not in error and not records.exists()
