"""Runs that stop and go on: SIGKILL and Ctrl-C mid-epoch, resume in place, safe checkpoints."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.models import load_classifier
from emnist_lightning.overrides import override_text, override_value
from emnist_lightning.runs.resume import NO_SEARCH, resume_arguments, why_refused
from tests.conftest import run_entry_point
from tests.signals import forget_signal, signal_at_step

pytestmark = pytest.mark.slow

# 47 * 22 training images in batches of 64: 17 steps an epoch; dropout exercises the restored RNG state
RUN = [
    "model=mlp",
    "model.hidden_dims=[32,32,32]",
    "model.dropout=0.2",
    "data.batch_size=64",
    "trainer.max_epochs=3",
    "trainer.log_every_n_steps=1",
    "callbacks=no_pictures",  # what is checked here is the run's state and metrics
    "callbacks.progress_bar=null",
]
MID_SECOND_EPOCH = 17 + 9
RESULTS = ("val_acc", "val_macro_acc", "val_loss", "test_acc", "test_macro_acc", "test_loss")


def train(run_dir: Path, data_dir: Path, *overrides: str, env: dict[str, str] | None = None):
    return run_entry_point(
        "train.py", f"data.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *RUN, *overrides, env=env
    )


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def scalar_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def uninterrupted(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = train(run_dir, synthetic_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    first, second = record(resumed), record(uninterrupted)
    assert first["status"] == "completed"
    for key in RESULTS:
        assert first[key] == pytest.approx(second[key], abs=1e-6), key
    assert first["history"] == second["history"]
    series, expected = scalar_series(resumed), scalar_series(uninterrupted)
    for tag in ("train/loss_step", "val/acc", "val/loss", "train/loss", "lr-Adam"):
        steps = [step for step, _ in series[tag]]
        assert len(steps) == len(set(steps)), f"{tag}: duplicated steps"
        assert steps == [step for step, _ in expected[tag]], f"{tag}: missing or extra steps"
    for tag in ("val/acc", "val/loss"):
        assert [value for _, value in series[tag]] == pytest.approx([value for _, value in expected[tag]]), tag
    assert [p.name for p in (resumed / "tensorboard").iterdir() if p.is_dir()] == [], "a second log folder"


def test_run_killed_mid_epoch_resumes_to_the_same_result(
    uninterrupted: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    killed = train(run_dir, synthetic_dir, *signal_at_step(MID_SECOND_EPOCH, "SIGKILL"))
    assert killed.returncode == -9
    assert not (run_dir / "metrics.json").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    forget_signal(run_dir)
    resumed = run_entry_point("train.py", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(run_dir, uninterrupted)
    assert list(tmp_path.iterdir()) == [run_dir], "the resumed run wrote somewhere else"


def test_ctrl_c_stops_after_the_step_saves_and_resumes(
    uninterrupted: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    stopped = train(run_dir, synthetic_dir, *signal_at_step(MID_SECOND_EPOCH, "SIGINT"))
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    interrupted = record(run_dir)
    assert interrupted["status"] == "interrupted"
    assert f"python train.py resume={run_dir}" in interrupted["error"]
    assert f"resume with: python train.py resume={run_dir}" in stopped.stderr.strip().splitlines()[-1]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    forget_signal(run_dir)
    resumed = run_entry_point("train.py", f"resume={run_dir}", "callbacks.progress_bar=null")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(run_dir, uninterrupted)


def test_sigterm_stops_like_ctrl_c_and_a_requeued_job_continues(
    uninterrupted: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    command = [
        f"data.data_dir={synthetic_dir}",
        f"hydra.run.dir={run_dir}",
        *RUN,
        *signal_at_step(MID_SECOND_EPOCH, "SIGTERM"),
    ]
    stopped = run_entry_point("train.py", *command)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert record(run_dir)["status"] == "interrupted"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == MID_SECOND_EPOCH
    # SLURM, having preempted the job, runs the same command again and counts the restart
    requeued = run_entry_point("train.py", *command, env={"SLURM_RESTART_COUNT": "1"})
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert f"Continuing from {run_dir / 'checkpoints' / 'last.ckpt'}" in (run_dir / "train.log").read_text()
    assert_same_run(run_dir, uninterrupted)


def test_resume_refuses_changes_that_would_alter_the_run(uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(uninterrupted, run_dir)
    before = (run_dir / "metrics.json").read_text()
    result = run_entry_point("train.py", f"resume={run_dir}", "optimizer.lr=0.1")
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: ") and "optimizer.lr cannot change" in result.stderr
    )
    # the same check, where train.py makes it first, for the other changes
    for change, fragment in (
        ("trainer.max_epochs=5", "laid out for 3 epochs"),
        ("trainer.max_epochs=2", "fewer than the run's 3"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            resume_arguments([f"resume={run_dir}", change])
    assert (run_dir / "metrics.json").read_text() == before


class Payload:
    """Pickled, it asks the loader to run a shell command that leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoints(folder: Path) -> list[Path]:
    marker = folder / "payload-ran"
    through_torch, raw = folder / "torch.ckpt", folder / "raw.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"network": Payload(marker)}}, through_torch)
    raw.write_bytes(pickle.dumps(Payload(marker), protocol=2))  # the protocol torch.save uses
    return [through_torch, raw]


def test_malicious_checkpoint_never_runs(uninterrupted: Path, synthetic_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    for checkpoint in malicious_checkpoints(tmp_path):
        with pytest.raises(CheckpointError, match="refused"):
            load_classifier(checkpoint)
        evaluated = run_entry_point(
            "evaluate.py",
            f"ckpt_path={checkpoint}",
            f"data.data_dir={synthetic_dir}",
            f"hydra.run.dir={tmp_path / f'evaluated-{checkpoint.stem}'}",
        )
        assert evaluated.returncode == 1
        assert evaluated.stderr.strip().splitlines()[-1].startswith("error: checkpoint")
        assert "refused" in evaluated.stderr and "Traceback" not in evaluated.stderr

        run_dir = tmp_path / f"resume-{checkpoint.stem}"
        shutil.copytree(uninterrupted, run_dir)
        shutil.copy(checkpoint, run_dir / "checkpoints" / "last.ckpt")
        resumed = run_entry_point("train.py", f"resume={run_dir}")
        assert resumed.returncode == 1 and "refused" in resumed.stderr.strip().splitlines()[-1]
    assert not marker.exists(), "the checkpoint's payload ran"


def test_the_malicious_checkpoints_would_run_if_unpickled_unsafely(tmp_path: Path) -> None:
    for checkpoint in malicious_checkpoints(tmp_path):
        with contextlib.suppress(Exception):  # the payload runs while unpickling, before anything can fail
            torch.load(checkpoint, weights_only=False)
        assert (tmp_path / "payload-ran").exists()
        (tmp_path / "payload-ran").unlink()


def test_a_run_folder_with_a_planted_target_is_refused_and_the_payload_never_runs(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """A shared run folder whose config builds shutil.copy (or whose overrides set a _target_): resume= refuses
    it in one line before anything is instantiated, and the file it would have written never appears."""
    victim = tmp_path / "victim.txt"
    for where in ("config", "overrides"):
        run_dir = tmp_path / where
        shutil.copytree(uninterrupted, run_dir)
        if where == "config":
            config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
            config["callbacks"]["x"] = {
                "_target_": "shutil.copy",
                "_args_": [str(run_dir / "metrics.json"), str(victim)],
            }
            (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        else:
            overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
            overrides.append("+callbacks.x._target_=shutil.copy")
            (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        result = run_entry_point("train.py", f"resume={run_dir}")
        assert result.returncode == 1, where
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: resume=") and ("shutil.copy" in last), last
        assert not victim.exists()


def test_a_run_folder_whose_name_holds_override_characters_can_be_resumed(uninterrupted: Path, tmp_path: Path) -> None:
    """'=', ',', brackets and quotes in a run folder's path: resume= quotes it for Hydra, which reads it back
    whole, as `resume=` and as the run dir."""
    run_dir = tmp_path / "lr=0.1,seed=(1) it's"
    shutil.copytree(uninterrupted, run_dir)
    arguments = resume_arguments([f"resume={override_text(run_dir)}"])
    assert override_value(arguments, "resume") == str(run_dir)
    assert override_value(arguments, "hydra.run.dir") == str(run_dir)


@pytest.mark.parametrize(
    ("where", "planted", "fragment"),
    [
        ("config", "${oc.create:{_target_: shutil.copy, _args_: [METRICS, VICTIM]}}", "differs"),
        ("config", "${oc.decode:'{_target_: shutil.copy, _args_: [METRICS, VICTIM]}'}", "differs"),
        ("overrides", "+callbacks.x=${oc.create:{a: 1}}", "interpolation"),
        ("overrides", "+callbacks.x='${oc.decode:1}'", "interpolation"),
        ("overrides", "callbacks.model_checkpoint.dirpath=ELSEWHERE", "moves where the run writes"),
        ("overrides", "logger.tensorboard.save_dir=ELSEWHERE", "moves where the run writes"),
        ("overrides", "+logger.mlflow.tracking_uri=http://collector.example", "moves where the run writes"),
        ("overrides", "paths.log_dir=ELSEWHERE", "moves where the run writes"),
        ("overrides", "+hydra.job.chdir=true", "changes how Hydra runs"),
        ("overrides", "experiment=../../../../tmp/evil", "outside the project's conf/"),
        ("config", "http://collector.example", "differs"),
    ],
    ids=[
        "oc.create-in-config",
        "oc.decode-in-config",
        "oc.create-override",
        "quoted-oc.decode-override",
        "checkpoint-dirpath",
        "tensorboard-save-dir",
        "mlflow-server",
        "log-dir",
        "hydra-setting",
        "group-path",
        "changed-value-in-config",
    ],
)
def test_a_planted_node_of_any_form_is_refused_and_nothing_runs(
    uninterrupted: Path, tmp_path: Path, where: str, planted: str, fragment: str
) -> None:
    """resume= composes the run's config again from conf/ and checked overrides: the saved config must be
    that composition, and the overrides what a command line of this project says. Checked where train.py
    checks it, first of all (`resume_arguments`), in this process: the planted-target test above shows the
    command's one line and exit status for the same refusal."""
    run_dir, victim, elsewhere = tmp_path / "run", tmp_path / "victim.txt", tmp_path / "elsewhere"
    shutil.copytree(uninterrupted, run_dir)
    planted = planted.replace("METRICS", str(run_dir / "metrics.json")).replace("VICTIM", str(victim))
    planted = planted.replace("ELSEWHERE", str(elsewhere))
    if where == "config":
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        if planted.startswith("http"):
            config["logger"]["tensorboard"]["save_dir"] = planted
        else:
            config["callbacks"]["x"] = planted
        (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    else:
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, planted]))
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    with pytest.raises(ConfigError) as refused:
        resume_arguments([f"resume={run_dir}"])
    message = str(refused.value)
    assert message.startswith("resume=") and fragment in message and "refused" in message, message
    assert "\n" not in message
    assert not victim.exists() and not elsewhere.exists()
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


def test_a_run_folder_whose_name_would_run_a_resolver_is_refused(uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "r${oc.decode:x}"
    shutil.copytree(uninterrupted, run_dir)
    result = run_entry_point("train.py", f"resume={override_text(run_dir)}")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "rename it" in last, result.stderr[-2000:]
    assert not (tmp_path / "rx").exists()


def test_a_search_trials_own_overrides_may_be_resumed_and_are_set_to_null() -> None:
    """A trial records where its study is; a resume reports to no study, so those keys are not a place the
    folder could send anything."""
    assert why_refused("search.storage='sqlite:////runs/search/optuna.db'") is None
    assert why_refused("search.trial=3") is None
    assert why_refused("callbacks.model_checkpoint.dirpath=/elsewhere") == "moves where the run writes or reports"
    assert "search.storage=null" in NO_SEARCH
