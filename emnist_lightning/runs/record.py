"""What a run leaves for programs to compare: metrics.json (`RunRecord`) and the overrides Hydra recorded.

RunRecord is the one writer and reader of metrics.json, `recorded_overrides` the one reader of
.hydra/overrides.yaml; train, eval, resume, the sweep report and the benchmark all go through them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from emnist_lightning.atomic import replaced_atomically
from emnist_lightning.errors import ConfigError
from emnist_lightning.runs.context import RunContext

METRICS_FILE = "metrics.json"
OVERRIDES_FILE = Path(".hydra", "overrides.yaml")
# Statuses of runs that trained: a pruned search trial has validation results, though no test
TRAINED_STATUSES = ("completed", "pruned")


def recorded_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides Hydra recorded for a run or a sweep job (.hydra/overrides.yaml); a file
    that cannot be read, or holds anything but a list of strings, is a ConfigError that names it."""
    path = run_dir / OVERRIDES_FILE
    try:
        recorded = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path} is unreadable ({type(err).__name__})") from err
    if not isinstance(recorded, list) or not all(isinstance(line, str) for line in recorded):
        raise ConfigError(f"{path} is not a list of overrides")
    return recorded


@dataclass
class RunRecord:
    """One run's outcome. Accuracies are of the best checkpoint; absent values are left out of the file."""

    # completed, failed, interrupted (resumable), pruned (a search trial its pruner stopped), or fast_dev_run
    # (a smoke test, not a trained model); broken: a metrics.json that could not be read
    status: str
    choices: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    peak_rss_mb: float | None = None
    split: str | None = None  # the EMNIST split trained on (train) or tested on (evaluate)
    val_acc: float | None = None
    val_macro_acc: float | None = None
    val_loss: float | None = None
    test_acc: float | None = None
    test_macro_acc: float | None = None
    test_loss: float | None = None
    test_ece: float | None = None  # expected calibration error of the raw probabilities
    temperature: float | None = None  # fitted on validation after training (models/calibration.py)
    val_loss_calibrated: float | None = None  # validation NLL with the temperature (val_loss: without)
    test_loss_calibrated: float | None = None
    test_ece_calibrated: float | None = None  # the calibration error of what people are shown
    test_acc_ci: list[float] | None = None  # 95% intervals: Wilson for accuracy, a bootstrap over test images
    test_macro_acc_ci: list[float] | None = None  # for macro accuracy (analysis/statistics.py)
    epochs: int | None = None
    fit_seconds: float | None = None
    params: int | None = None
    best_checkpoint: str | None = None  # train: the checkpoint evaluated
    stopped_early: str | None = None  # why early stopping ended training, when it did
    checkpoint: str | None = None  # eval: the checkpoint tested (an ensemble's, comma-separated)
    members: list[dict[str, Any]] | None = None  # eval of an ensemble: each member's test figures
    ensemble_vs_best_member: dict[str, Any] | None = None  # McNemar's exact test on the same test images
    history: dict[str, list[float]] = field(default_factory=dict)  # validation metrics per epoch
    seconds: dict[str, list[float]] = field(default_factory=dict)  # per train epoch, val pass, test pass
    provenance: dict[str, Any] = field(default_factory=dict)  # code, versions, data, hardware (runs/provenance.py)
    laps: dict[str, float] = field(default_factory=dict)  # where the run's time went (training/callbacks.py)
    pictures: dict[str, float] = field(default_factory=dict)  # seconds drawing each figure
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def of_run(cls, context: RunContext, status: str, **fields: Any) -> RunRecord:
        return cls(status, choices=context.choices, overrides=context.overrides, peak_rss_mb=peak_rss_mb(), **fields)

    def summary(self) -> str:
        """The run's accuracies for the log, each test figure with its 95% interval."""

        def figure(value: float | None, interval: list[float] | None) -> str:
            if value is None:
                return "n/a"
            return f"{value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")

        parts = [] if self.val_acc is None else [f"val acc {self.val_acc:.4f} (macro {self.val_macro_acc:.4f})"]
        macro = figure(self.test_macro_acc, self.test_macro_acc_ci)
        return ", ".join([*parts, f"test acc {figure(self.test_acc, self.test_acc_ci)} (macro {macro})"])

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def write(self, directory: Path) -> Path:
        """Write metrics.json atomically, so a reader never sees half a file. In a run of several processes
        (DDP) only the main one writes: they all hold the same, reduced, values."""
        path = directory / METRICS_FILE
        if rank_zero_only.rank != 0:
            return path
        directory.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path, durable=True) as file:  # a full disk: the previous record stays
            file.write((json.dumps(self.values(), indent=2, default=str) + "\n").encode())
        return path

    def values(self) -> dict[str, Any]:
        """What metrics.json holds: every field that has a value."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RunRecord:
        """A record from metrics.json's content; keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    @classmethod
    def read(cls, directory: Path) -> RunRecord | None:
        """The record in `directory`, or None while the run has not written one. Unknown keys are ignored; a
        file that cannot be read is a record with status 'broken' that says why."""
        path = directory / METRICS_FILE
        if not path.is_file():
            return None
        try:
            values = json.loads(path.read_text())
            if not isinstance(values, dict) or not isinstance(values.get("status"), str):
                raise ValueError("no status")
        except (OSError, ValueError) as err:  # JSONDecodeError is a ValueError
            return cls("broken", error=f"{path} is unreadable ({err}); the job's record was lost: run it again")
        return cls.from_values(values)


def stage_metrics(results: list[dict[str, float]], stage: str) -> dict[str, float]:
    """RunRecord fields such as {'val_acc': ..., 'val_macro_acc': ..., 'val_loss': ...} from
    the results of trainer.validate or trainer.test."""
    prefix = f"{stage}/"
    return {
        f"{stage}_{key.removeprefix(prefix)}": float(value)
        for key, value in results[0].items()
        if key.startswith(prefix)
    }


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux VmHWM), or None where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024
