"""A callback the end-to-end tests add to train.py (`+callbacks.signal._target_=tests.signals.SignalAtStep`)
so that a real signal reaches the training process at an exact step, mid-epoch."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L


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
