"""Continuing a stopped run in its own folder: `python train.py resume=<run dir> [trainer.max_epochs=N]`.

A run folder may come from someone else, so nothing in it is trusted as configuration. The run's config is
composed again from the project's own `conf/` and the overrides the run recorded (`.hydra/overrides.yaml`),
after each is checked against what a command line of this project may say: no `_target_` or other
instantiation keys, no interpolation (a resolver such as `oc.create` or `oc.env` would run), no Hydra
settings, no config group option outside `conf/`, and no output place (a checkpoint folder, a log folder,
a tracking server) other than the project's. The saved `.hydra/config.yaml` must be exactly that
composition: a planted node of any form is refused, before anything runs. Only keys that cannot change
what was trained so far may be given again. Hydra writes no new `.hydra/` files. Training continues from
`checkpoints/last.ckpt` with its epoch, optimizer, scheduler, metric and random states, and logs into the
same TensorBoard folder, whose events after the checkpoint's step are replaced.

A SLURM job that the cluster requeues (after preemption or its time limit) continues the same way, by itself,
and so does a job of a sweep launched again into its folder (`python train.py -m ... hydra.sweep.dir=<same>`):
its jobs that finished are skipped, a stopped one continues from its last.ckpt, the others run.
"""

from __future__ import annotations

import logging
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.checkpoints import read_checkpoint
from emnist_lightning.overrides import override_text, override_value, parse_overrides
from emnist_lightning.runs.config import compose, is_multirun
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.ownership import check_not_in_use
from emnist_lightning.runs.record import OVERRIDES_FILE, RunRecord, recorded_overrides

log = logging.getLogger(__name__)

# Keys a resumed run may set: where the data is, how the process runs, and a longer run.
RESUMABLE_KEYS = ("trainer.max_epochs", "data.data_dir", "data.download", "num_threads")
RESUMABLE_PREFIXES = ("callbacks.progress_bar",)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def is_resumable(key: str) -> bool:
    return key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES)


def check_run_dir(run_dir: Path) -> None:
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"resume={run_dir}: not a run folder (no .hydra/config.yaml); pass the folder a run wrote")
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise ConfigError(
            f"resume={run_dir}: the run saved no {LAST_CHECKPOINT} (it stopped before its first epoch ended, or "
            "checkpointing was off); start it again instead"
        )


def resume_arguments(arguments: list[str]) -> list[str]:
    """The command line with `resume=<dir>` turned into what Hydra needs to compose the run's config again
    and run in that folder; any other command line is returned as it is. Everything is checked here,
    before Hydra writes to the folder, so a refused resume leaves the run as it was."""
    run_dir_value = override_value(arguments, "resume")
    if run_dir_value is None:
        return arguments
    if is_multirun(arguments):
        raise ConfigError("resume= continues one run; it cannot be combined with -m")
    run_dir = Path(str(run_dir_value)).expanduser().resolve()
    if "${" in str(run_dir):  # Hydra would resolve it inside the override, however quoted
        raise ConfigError(f"resume={run_dir}: a folder whose name holds '${{' cannot be passed to Hydra; rename it")
    check_not_in_use(run_dir, f"resume={run_dir}")  # first: nothing is read from a folder being written
    check_run_dir(run_dir)
    recorded = checked_overrides(run_dir)
    original = composed_config(run_dir, recorded)
    others = [override for override in parse_overrides(arguments) if override.key_or_group != "resume"]
    for override in others:
        if not is_resumable(override.key_or_group):
            raise ConfigError(
                f"resume= keeps the run's own config, so {override.key_or_group} cannot change; allowed: "
                f"{', '.join(RESUMABLE_KEYS + RESUMABLE_PREFIXES)}. Start a new run to change it"
            )
    epochs = override_value(arguments, "trainer.max_epochs")
    if epochs is not None:
        check_epochs(int(epochs), original)
    read_checkpoint(run_dir / LAST_CHECKPOINT, mmap=True)  # refuses a checkpoint that is not plain data
    flags = [argument for argument in arguments if argument.startswith("-")]
    quoted = override_text(run_dir)  # a folder whose name holds '=' or ',' is still one value
    given = [override.input_line for override in others]
    hydra_settings = [f"hydra.run.dir={quoted}", "hydra.output_subdir=null"]
    return [*flags, *recorded, *given, *NO_SEARCH, f"resume={quoted}", *hydra_settings]


# Words that make Hydra build or call something, in any override a run recorded.
INSTANTIATION_KEYS = ("_target_", "_args_", "_partial_", "_call_", "_recursive_", "_convert_")
# Keys that say where a run writes or reports; a recorded override may not move them.
DESTINATIONS = {
    "dirpath",
    "save_dir",
    "tracking_uri",
    "log_dir",
    "output_dir",
    "cache_dir",
    "storage",
    "pretrained_dir",
}
# A resumed run reports to no search: its trial was told already, and its storage is not the folder's to choose.
NO_SEARCH = ["search.storage=null", "search.study=null", "search.trial=null"]


def checked_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was started with, each checked against what this project's command line may say."""
    try:
        recorded = recorded_overrides(run_dir)
    except ConfigError as err:
        raise ConfigError(f"resume={run_dir}: {err}; refused") from err
    for line in recorded:
        reason = why_refused(line)
        if reason is not None:
            raise ConfigError(f"resume={run_dir}: its recorded override {line!r} {reason}; refused")
    return recorded


def why_refused(line: str) -> str | None:
    """Why a recorded override is not one this project's command line would give, or None."""
    if any(word in line for word in INSTANTIATION_KEYS):
        return "would make Hydra build or call code"
    if "${" in line:
        return "holds an interpolation, whose resolver would run"
    (override,) = parse_overrides([line])
    key, value = override.key_or_group, override.value()
    if key.startswith("hydra") or key == "resume":
        return "changes how Hydra runs, which a run folder may not"
    if key in {line.split("=")[0] for line in NO_SEARCH}:  # a search trial's: set to null on resume
        return None
    if key.rsplit(".", 1)[-1] in DESTINATIONS or key.startswith("paths."):
        return "moves where the run writes or reports"
    if "." not in key and isinstance(value, str) and ("/" in value or ".." in value):
        return "names a config outside the project's conf/"
    return None


def composed_config(run_dir: Path, recorded: list[str]) -> DictConfig:
    """The run's config as the project's configs compose it from its recorded overrides; the saved one
    must be exactly this."""
    try:
        composed = compose("train", recorded, None)
    except Exception as err:  # the overrides no longer compose with this version's configs
        raise ConfigError(
            f"resume={run_dir}: its overrides do not compose with these configs ({err}); start a new run"
        ) from err
    try:
        saved = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=False)
    except Exception as err:  # YAML or OmegaConf errors of a damaged file
        raise ConfigError(f"resume={run_dir}: its .hydra/config.yaml is unreadable ({type(err).__name__})") from err
    expected = OmegaConf.to_container(composed, resolve=False)
    expected.pop("hydra", None)
    where = first_difference(saved, expected)
    if where is not None:
        found = OmegaConf.select(OmegaConf.create(saved), where, default="nothing") if where != "<root>" else saved
        if isinstance(found, DictConfig) and "_target_" in found:  # name what it would build
            found = f"builds {found._target_}"
        raise ConfigError(
            f"resume={run_dir}: its .hydra/config.yaml differs from what the project's configs compose with its "
            f"overrides (at {where}: {str(found)[:120]}); a run folder cannot bring configuration of its own: refused"
        )
    return composed


def first_difference(saved: Any, expected: Any, path: str = "") -> str | None:
    """The first key path at which two plain configs differ, or None."""
    if isinstance(saved, dict) and isinstance(expected, dict):
        for key in sorted(saved.keys() | expected.keys(), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in saved or key not in expected:
                return where
            found = first_difference(saved[key], expected[key], where)
            if found is not None:
                return found
        return None
    return None if saved == expected and type(saved) is type(expected) else (path or "<root>")


def check_epochs(wanted: int, original: DictConfig) -> None:
    planned = original.trainer.max_epochs
    if wanted == planned:
        return
    if wanted < planned:
        raise ConfigError(
            f"trainer.max_epochs={wanted} is fewer than the run's {planned}; resume with {planned} or more"
        )
    if original.get("scheduler") and original.scheduler.get("length_arg"):
        raise ConfigError(
            f"trainer.max_epochs cannot grow on resume: the run's learning-rate schedule "
            f"({original.scheduler.scheduler._target_.rsplit('.', 1)[-1]}) was laid out for {planned} epochs; "
            "start a new run for a longer one"
        )


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was taken at (its tensors are mapped, not read: Lightning reads them)."""
    return int(read_checkpoint(checkpoint, mmap=True)["global_step"])


def requeued() -> bool:
    """Whether this is a SLURM job running again after preemption or its time limit (SLURM counts the
    restarts; submitit's launcher requeues its jobs with the same folder and config)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def earlier_attempt_checkpoint(run_dir: Path, sweep_continued: bool) -> Path | None:
    """For a requeued job, or a job of a sweep launched again into its folder: the last.ckpt its earlier
    attempt left there, to continue from. None otherwise, and None when Lightning's own SLURM requeue (on
    SIGUSR1) saved an hpc_ckpt_N.ckpt there, which Lightning loads itself."""
    if not (requeued() or sweep_continued) or any(run_dir.glob("hpc_ckpt_*.ckpt")):
        return None
    last = run_dir / LAST_CHECKPOINT
    return last if last.is_file() else None


def continued_from(cfg: DictConfig, context: RunContext) -> Path | None:
    """The checkpoint a training run continues from: a stopped run's own (resume=<dir>), the earlier
    attempt of a requeued SLURM job or of a sweep's job launched again, or none for a new run."""
    if cfg.get("resume"):  # composed again from the project's configs and the run's checked overrides
        resume_from = Path(cfg.resume) / LAST_CHECKPOINT
    else:
        sweep_continued = context.multirun and not cfg.get("overwrite")
        resume_from = earlier_attempt_checkpoint(context.output_dir, sweep_continued)
    if resume_from is not None:
        log.info("Continuing from %s", resume_from)
        continue_tensorboard_after(cfg, checkpoint_step(resume_from))
    return resume_from


def continue_tensorboard_after(cfg: DictConfig, step: int) -> None:
    """Make the run's TensorBoard logs drop what the stopped run logged after its checkpoint, so every
    curve continues as one series."""
    for node in (cfg.get("logger") or {}).values():
        if node is not None and str(node.get("_target_", "")).endswith("TensorBoardLogger"):
            with open_dict(node):  # the live config of a requeued job is read-only in structure
                node.purge_step = step  # the first step after the checkpoint is logged at its global_step


# --- A sweep run again into its own folder (after an interruption, or grown by more jobs) ----------------


@dataclass(frozen=True)
class SweepProgress:
    """What a basic sweep's folder already holds of the jobs this command line asks for."""

    planned: int
    finished: int
    seconds_per_job: float | None  # measured on the finished jobs, else the sweep's own figure
    measured_here: bool

    def summary(self) -> str:
        remaining = self.planned - self.finished
        done = f"{self.finished} finished earlier (skipped), " if self.finished else ""
        if self.seconds_per_job is None:
            cost = "no cost estimate (no job has finished yet, and the sweep states no study.seconds_per_job)"
        else:
            source = "measured on the finished jobs" if self.measured_here else "the sweep's study.seconds_per_job"
            minutes = remaining * self.seconds_per_job / 60
            cost = f"about {minutes:.0f} min at {self.seconds_per_job:.0f} s a job ({source})"
        return f"sweep: {self.planned} jobs, {done}{remaining} to run: {cost}"


def planned_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of every job of a basic sweep, in launch order, as Hydra's BasicSweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the expansion Hydra itself runs

    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    parsed = parse_overrides([*params, *config.hydra.overrides.task])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def job_identity(overrides: list[str]) -> list[str]:
    """What makes two jobs the same job: their overrides, but not Hydra's (where and how the sweep
    runs) or overwrite."""
    return sorted(line for line in overrides if not line.startswith(("hydra.", "hydra/", "overwrite=")))


def sweep_progress(config: DictConfig, check_earlier: bool) -> SweepProgress:
    """With `check_earlier`, check that the jobs already in the sweep folder are this sweep's, job by job
    (so a rerun after an interruption, or one that adds jobs at the end, continues it) and count those that
    finished; without (overwrite=true), every job runs again."""
    folder = Path(config.hydra.sweep.dir)
    jobs = planned_jobs(config)
    finished = []
    earlier_jobs = folder.glob(f"*/{OVERRIDES_FILE}") if check_earlier else []
    for job_dir in sorted(path.parents[1] for path in earlier_jobs):
        try:
            earlier = recorded_overrides(job_dir)
        except ConfigError as err:
            raise ConfigError(
                f"hydra.sweep.dir={folder}: {err}; choose another folder, or add overwrite=true to replace its jobs"
            ) from err
        number = int(job_dir.name) if job_dir.name.isdigit() else -1
        if not 0 <= number < len(jobs) or job_identity(earlier) != job_identity(jobs[number]):
            ran = " ".join(job_identity(earlier)) or "no overrides"
            raise ConfigError(
                f"hydra.sweep.dir={folder} holds an earlier sweep whose job {job_dir.name} ran {ran}, not a job of "
                "this one; choose another folder, or add overwrite=true to replace its jobs"
            )
        record = RunRecord.read(job_dir)
        if record is not None and record.status == "completed":
            finished.append(record)
    durations = [
        record.finished_at - record.started_at for record in finished if record.finished_at and record.started_at
    ]
    stated = (config.get("study") or {}).get("seconds_per_job")
    seconds = statistics.median(durations) if durations else stated
    return SweepProgress(len(jobs), len(finished), seconds, bool(durations))


def finished_earlier(context: RunContext) -> RunRecord | None:
    """A sweep job's own completed record, left by an earlier launch of the same sweep: the job is skipped."""
    record = RunRecord.read(context.output_dir)
    if record is None or record.status != "completed":
        return None
    return record if job_identity(record.overrides) == job_identity(context.overrides) else None
