"""A callback the end-to-end tests add to train.py (`+callbacks.signal._target_=tests.signals.SignalAtStep`)
so that a real signal reaches the training process at an exact step, mid-epoch."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import yaml


class SignalAtStep(L.Callback):
    def __init__(self, step: int, name: str) -> None:
        self.step, self.signal = step, signal.Signals[name]

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step and not trainer.ckpt_path:  # not again when the run is resumed
            os.kill(os.getpid(), self.signal)


def signal_at_step(step: int, name: str) -> list[str]:
    """train.py overrides that send signal `name` to the run after optimizer step `step`."""
    return [
        "+callbacks.signal._target_=tests.signals.SignalAtStep",
        f"+callbacks.signal.step={step}",
        f"+callbacks.signal.name={name}",
    ]


def forget_signal(run_dir: Path) -> None:
    """Take the test's signal callback out of a stopped run's folder, leaving it as a user's run leaves it:
    resume= refuses a folder whose config builds something the project's configs do not."""
    config_path, overrides_path = run_dir / ".hydra" / "config.yaml", run_dir / ".hydra" / "overrides.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["callbacks"].pop("signal", None)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    overrides = yaml.safe_load(overrides_path.read_text())
    overrides_path.write_text(yaml.safe_dump([o for o in overrides if not o.startswith("+callbacks.signal.")]))
