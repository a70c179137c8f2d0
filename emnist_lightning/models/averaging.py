"""Weight averaging: Lightning's exponential moving average, kept to the stage it was made for."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging


class ExponentialMovingAverage(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging, whose validation passes and checkpoints use the averaged weights
    (a checkpoint's `state_dict` is the average; the raw weights travel beside it for resuming).

    After fitting, the averaged weights are the model's, and every checkpoint already holds them as its
    weights. Lightning's callback would still act on later `validate`/`test` calls of the same Trainer:
    on loading a checkpoint it puts the raw weights back into the model, so the test would measure
    the un-averaged network. Here the average is dropped once fitting ends, and checkpoints loaded
    outside fitting are left as Lightning loaded them.
    """

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._average_model = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
