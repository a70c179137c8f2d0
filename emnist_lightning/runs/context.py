"""What a run knows about itself beyond its config: where it writes, what was chosen and overridden."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


@dataclass(frozen=True)
class RunContext:
    """Read from Hydra once where a run starts, then passed to what needs it."""

    output_dir: Path
    choices: dict[str, str] = field(default_factory=dict)  # option per config group, e.g. {'model': 'mlp'}
    overrides: list[str] = field(default_factory=list)  # the command line's overrides
    multirun: bool = False

    @classmethod
    def from_hydra(cls) -> RunContext:
        hydra = HydraConfig.get()
        choices = {
            group: str(option)
            for group, option in hydra.runtime.choices.items()
            if option is not None and not group.startswith("hydra")
        }
        return cls(
            output_dir=Path(hydra.runtime.output_dir),
            choices=choices,
            overrides=list(hydra.overrides.task),
            multirun=hydra.mode == RunMode.MULTIRUN,
        )
