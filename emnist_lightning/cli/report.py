"""`emnist-report <sweep dir>` (or `python -m emnist_lightning.cli.report sweep_dir=<dir>`): compare the
jobs of a sweep in results.csv, results.md and pictures beside them (conf/report.yaml, analysis/report.py)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from emnist_lightning.analysis.report import SWEEP_DIR_HINT, report
from emnist_lightning.errors import ConfigError
from emnist_lightning.overrides import override_value
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point


def report_sweep(cfg: DictConfig, context: RunContext) -> None:
    report(Path(cfg.sweep_dir), quiet=bool(cfg.quiet), baseline=cfg.get("baseline"), budget_key=cfg.get("budget_key"))


def sweep_dir_arguments(arguments: list[str]) -> list[str]:
    """A bare first argument is the sweep dir; it must be a folder before Hydra logs into it."""
    if arguments and "=" not in arguments[0] and not arguments[0].startswith("-"):
        arguments = [f"sweep_dir={arguments[0]}", *arguments[1:]]
    sweep_dir = override_value(arguments, "sweep_dir")
    if sweep_dir is None:
        raise ConfigError(f"no sweep dir given: {SWEEP_DIR_HINT}, as emnist-report <dir>")
    if not Path(str(sweep_dir)).is_dir():
        raise ConfigError(f"'{sweep_dir}' is not a folder; {SWEEP_DIR_HINT}")
    return arguments


def main() -> None:
    run_entry_point("report", report_sweep, prepare_arguments=sweep_dir_arguments)


if __name__ == "__main__":
    main()
