"""Running one job of an entry point: process settings once, then the task, failing clearly."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

from omegaconf import DictConfig

from emnist_lightning.errors import find_user_error
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.host import configure_host
from emnist_lightning.runs.record import RunRecord

log = logging.getLogger(__name__)

Task = Callable[[DictConfig, RunContext], "float | None"]


def run_task(task: Task, cfg: DictConfig) -> float | None:
    """Run one job. A user error ends a single run with one line and exit status 1; in a
    multirun any failure is recorded in the job's metrics.json and the sweep goes on."""
    context = RunContext.from_hydra()
    configure_host(cfg)
    try:
        return task(cfg, context)
    except Exception as err:
        user_error = find_user_error(err) or (err if isinstance(err, FloatingPointError) else None)
        message = str(user_error) if user_error is not None else f"{type(err).__name__}: {err}"
        RunRecord.of_run(context, "failed", error=message, traceback=traceback.format_exc()).write(context.output_dir)
        if context.multirun:
            log.error("job failed: %s", message)
            return None
        if user_error is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
