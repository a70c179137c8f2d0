"""Learning-rate schedules as config: a scheduler factory plus how Lightning should step it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR

from emnist_lightning.errors import ConfigError

SchedulerFactory = Callable[..., LRScheduler | ReduceLROnPlateau]


@dataclass
class LRSchedule:
    """What `configure_optimizers` needs to build and step one scheduler.

    scheduler: a partial of a torch scheduler, missing only the optimizer (and the length
        named by `length_arg`).
    interval: step the scheduler every "epoch" or every optimizer "step".
    monitor: the logged metric a plateau scheduler watches.
    length_arg: the scheduler argument that takes the schedule's length (e.g. cosine's
        T_max, one-cycle's total_steps), filled in from the run: its epochs or steps.
    warmup_steps: linear warm-up from `warmup_start_factor` x lr over this many steps before
        the schedule starts (per-step schedules only).
    """

    scheduler: SchedulerFactory
    interval: Literal["epoch", "step"] = "epoch"
    monitor: str | None = None
    length_arg: str | None = None
    warmup_steps: int = 0
    warmup_start_factor: float = 0.01

    def __post_init__(self) -> None:
        if self.interval not in ("epoch", "step"):
            raise ConfigError(f"scheduler.interval='{self.interval}' must be 'epoch' or 'step'")
        if self.warmup_steps < 0:
            raise ConfigError(f"scheduler.warmup_steps={self.warmup_steps} must be >= 0")
        if self.warmup_steps and self.interval != "step":
            raise ConfigError(
                "scheduler.warmup_steps needs a per-step schedule (scheduler.interval=step), e.g. scheduler=cosine"
            )

    def lightning_config(self, optimizer: Optimizer, total_steps: int, total_epochs: int) -> dict[str, Any]:
        """The `lr_scheduler` entry of `configure_optimizers`' return value."""
        kwargs: dict[str, Any] = {}
        if self.length_arg is not None:
            length = total_steps if self.interval == "step" else total_epochs
            kwargs[self.length_arg] = max(1, length - self.warmup_steps)
        scheduler = self.scheduler(optimizer, **kwargs)
        if self.warmup_steps:
            if isinstance(scheduler, ReduceLROnPlateau):
                raise ConfigError("scheduler.warmup_steps cannot be combined with scheduler=plateau")
            warmup = LinearLR(optimizer, start_factor=self.warmup_start_factor, total_iters=self.warmup_steps)
            scheduler = SequentialLR(optimizer, [warmup, scheduler], milestones=[self.warmup_steps])
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.interval}
        if self.monitor is not None:
            config["monitor"] = self.monitor
        return config
