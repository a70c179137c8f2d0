"""What a run knows about itself beyond its config: where it writes, what was chosen and overridden."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emnist_lightning.runs.signals import StopRequests


@dataclass(frozen=True)
class RunContext:
    """Read from Hydra once where a run starts, then passed to what needs it."""

    output_dir: Path
    choices: dict[str, str] = field(default_factory=dict)  # option per config group, e.g. {'model': 'mlp'}
    overrides: list[str] = field(default_factory=list)  # the run's overrides, as its command line gave them
    multirun: bool = False
    # This process's overrides: the run's own, except for a resumed run (resume=<dir> and what may change)
    command_overrides: list[str] = field(default_factory=list)
    stop_requests: StopRequests = field(default_factory=StopRequests, compare=False)

    @classmethod
    def from_hydra(cls, cfg: DictConfig) -> RunContext:
        """This job's context; a resumed run's (resume=<dir>) is the one its folder recorded."""
        hydra = HydraConfig.get()
        live = cls.of_hydra_config(OmegaConf.to_container(hydra, resolve=False), Path(hydra.runtime.output_dir))
        if not cfg.get("resume"):
            return live
        return dataclasses.replace(cls.of_run_dir(Path(cfg.resume)), command_overrides=live.overrides)

    @classmethod
    def of_run_dir(cls, run_dir: Path) -> RunContext:
        """The context a run recorded in its folder's .hydra/hydra.yaml."""
        hydra = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
        return cls.of_hydra_config(hydra, run_dir)

    @classmethod
    def of_hydra_config(cls, hydra: dict[str, Any], output_dir: Path) -> RunContext:
        choices = {
            group: str(option)
            for group, option in hydra["runtime"]["choices"].items()
            if option is not None and not group.startswith("hydra")
        }
        multirun = str(hydra.get("mode")) in (str(RunMode.MULTIRUN), "MULTIRUN")
        overrides = list(hydra["overrides"]["task"])
        return cls(output_dir, choices, overrides, multirun, command_overrides=overrides)
