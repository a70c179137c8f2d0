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
    it swaps weights around each validation pass, and on loading a checkpoint it puts the raw weights
    back into the model, so the test would measure the un-averaged network. Here those hooks act while
    fitting only, and checkpoints loaded outside fitting are left as Lightning loaded them.
    """

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            super().on_validation_epoch_end(trainer, pl_module)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
