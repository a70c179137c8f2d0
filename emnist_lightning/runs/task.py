"""Running an entry point: the command line, process settings once, then the task, failing clearly."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError, UserError, find_user_error
from emnist_lightning.overrides import override_text, override_value
from emnist_lightning.runs.config import config_dir, is_multirun
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.host import configure_host, freeze_long_lived_objects
from emnist_lightning.runs.ownership import check_not_in_use, is_main_process, run_folder_lock
from emnist_lightning.runs.provenance import git_state
from emnist_lightning.runs.record import METRICS_FILE, TRAINED_STATUSES, RunRecord
from emnist_lightning.runs.resume import LAST_CHECKPOINT, finished_earlier, requeued, sweep_progress
from emnist_lightning.runs.signals import INTERRUPT_EXIT_CODES

log = logging.getLogger(__name__)

Task = Callable[[DictConfig, RunContext], "float | None"]


def run_entry_point(
    config_name: str, task: Task, prepare_arguments: Callable[[list[str]], list[str]] | None = None
) -> None:
    """Run `task` as a Hydra app of conf/<config_name>.yaml on this process's command line, which
    `prepare_arguments` may rewrite first (as resume= does); a user error there is one line too."""
    arguments = sys.argv[1:]
    git_state()  # the code this process loaded: what every job it runs records, whatever is committed later
    with user_errors_end_the_process():
        prepared = prepare_arguments(arguments) if prepare_arguments else arguments
        if not any(argument.startswith("resume=") for argument in arguments):  # a resumed run is checked there
            check_output_location(prepared)
    sys.argv = [sys.argv[0], *prepared]

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    def hydra_app(cfg: DictConfig) -> float | None:
        return run_task(task, cfg)

    hydra_app()
    freeze_long_lived_objects(once=False)  # everything is written: the collection at exit would walk it all


def check_output_location(arguments: list[str]) -> None:
    """Before Hydra writes anything: the run's folder (or the sweep's) must hold no run of any state unless
    overwrite=true, no process may be writing into it, and its place must be writable. Hydra would
    otherwise overwrite .hydra/ and the log, or fail with a traceback."""
    multirun = is_multirun(arguments)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = override_value(arguments, key)
    explicit = None if given is None else str(given)
    overwrite = override_value(arguments, "overwrite") is True
    # A requeued SLURM job continues its own run; DDP's other processes run in the main process's folder.
    if explicit and not requeued() and is_main_process():
        folder = Path(explicit).expanduser()
        check_not_in_use(folder, f"{key}={folder}")
        # A sweep into its own earlier folder continues it (checked job by job once the jobs are known:
        # SweepOutcome); a search (a sweeper of its own) continues its study there, each trial in a new folder.
        if not overwrite and not multirun:
            refuse_earlier_run(folder, key)
    target = Path(str(explicit or override_value(arguments, "paths.log_dir") or "outputs")).expanduser().absolute()
    existing = next(folder for folder in (target, *target.parents) if folder.exists())
    if not existing.is_dir():
        raise ConfigError(f"cannot write run outputs to '{target}': '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write run outputs to '{target}': '{existing}' is not writable; point paths.log_dir "
            "(or hydra.run.dir) at a folder you can write to"
        )


def run_state(folder: Path) -> str | None:
    """What a folder holds of a run, in words; None for a folder without one."""
    record = RunRecord.read(folder)
    if record is not None:
        return f"a {record.status} run"
    if any((folder / "checkpoints").glob("*.ckpt")) or (folder / LAST_CHECKPOINT).is_file():
        return "a run that stopped without a record (killed) or is still starting"
    if (folder / ".hydra").is_dir():
        return "a started run"
    return None


def refuse_earlier_run(folder: Path, key: str) -> None:
    state = run_state(folder)
    if state is None:
        return
    resumable = (folder / LAST_CHECKPOINT).is_file() and not state.startswith("a completed")
    advice = f"resume it with resume={override_text(folder)}" if resumable else "choose another folder"
    raise ConfigError(f"{key}={folder} holds {state}; {advice}, or add overwrite=true to replace it")


def fail(message: str, exit_code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(exit_code)


@contextmanager
def user_errors_end_the_process() -> Iterator[None]:
    """A UserError raised inside becomes one line and exit status 1 (outside a job, where run_task would
    record it; e.g. in the search's sweeper, which Hydra would otherwise report with a traceback)."""
    try:
        yield
    except UserError as err:
        fail(str(err))


def run_task(task: Task, cfg: DictConfig) -> float | None:
    """Run one job. A user error ends a single run with one line and exit status 1; in a multirun any
    failure is recorded in the job's metrics.json and the sweep goes on. Ctrl-C or SIGTERM records the
    run as interrupted, with how to resume it, and ends the process."""
    context = RunContext.from_hydra(cfg)
    configure_host(cfg)
    # a folder another process writes into is refused before anything, a record included, is written
    with user_errors_end_the_process(), run_folder_lock(context.output_dir):
        earlier = finished_earlier(context) if context.multirun and not cfg.get("overwrite") else None
        if earlier is not None:
            log.info("this job finished in an earlier launch of the sweep: skipped (%s)", earlier.summary())
            return earlier.val_acc
        return run_recorded(task, cfg, context)


def run_recorded(task: Task, cfg: DictConfig, context: RunContext) -> float | None:
    """`task`, and how it ended in the run's record when it did not end well."""
    try:
        return task(cfg, context)
    except BaseException as err:
        signal_name = context.stop_requests.signal_behind(err)
        if signal_name is not None:
            record_interruption(context, signal_name)
            raise SystemExit(INTERRUPT_EXIT_CODES[signal_name]) from None
        if not isinstance(err, Exception):
            raise
        user_error = find_user_error(err) or (err if isinstance(err, FloatingPointError) else None)
        message = str(user_error) if user_error is not None else f"{type(err).__name__}: {err}"
        failure = RunRecord.of_run(context, "failed", error=message, traceback=traceback.format_exc())
        keep_record(failure, context, message)
        if context.multirun:
            log.error("job failed: %s", message)
            return None
        if user_error is None:
            raise
        fail(message)


def keep_record(record: RunRecord, context: RunContext, message: str) -> None:
    """Write how the job ended; when even that fails (a full disk, a quota), say both in the log instead of
    letting the second error hide the first, or end a sweep whose other jobs may still run."""
    try:
        record.write(context.output_dir)
    except OSError as err:
        log.error("the job ended (%s) but its %s could not be written: %s", message, METRICS_FILE, err)


def record_interruption(context: RunContext, signal_name: str) -> None:
    resumable = (context.output_dir / LAST_CHECKPOINT).is_file()
    command = shlex.quote(f"resume={override_text(context.output_dir)}")
    how = f"resume with: python train.py {command}" if resumable else "no checkpoint to resume from"
    message = f"stopped by {signal_name}; {how}"
    keep_record(RunRecord.of_run(context, "interrupted", error=message), context, message)
    print(f"interrupted: {message}", file=sys.stderr)


class SweepOutcome(Callback):
    """Around a multirun, in the launching process. Before it: create the sweep dir, where the Optuna
    sweeper opens its SQLite study before any job has made the folder; for a basic sweep, check that the
    jobs already in the folder are this sweep's (an interrupted sweep launched again continues) and print
    its jobs and cost. After it: exit with status 1 when no job it ran completed (or was pruned by a
    search), so that scripts and CI notice a sweep that produced nothing; the records of an earlier launch
    in the same folder do not count."""

    started_at = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        self.started_at = time.time()
        if str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            with user_errors_end_the_process():
                progress = sweep_progress(config, check_earlier=not config.get("overwrite"))
            log.info(progress.summary())
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        written = [path for path in sweep_dir.rglob(METRICS_FILE) if path.stat().st_mtime >= self.started_at]
        records = [RunRecord.read(path.parent) for path in written]
        if records and not any(record is not None and record.status in TRAINED_STATUSES for record in records):
            fail(f"all {len(records)} jobs of the sweep in {sweep_dir} failed; their metrics.json files say why")
