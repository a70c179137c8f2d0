"""Where the Hydra configs live, composing one outside a Hydra run (tests, benchmarks), and what a command
line asks for: a multirun, or a sweep that needs one."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from emnist_lightning.overrides import MULTIRUN_FLAGS, override_text, override_value

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config_dir() -> str:
    """conf/ inside an installed wheel, else the repository's top-level conf/."""
    packaged = PACKAGE_DIR / "conf"
    return str(packaged if packaged.is_dir() else PACKAGE_DIR.parent / "conf")


def compose(config_name: str, overrides: list[str], output_dir: Path | None) -> DictConfig:
    """Compose a config as a run would, with `output_dir` as the run dir (None: the run dir Hydra will
    make, `paths.output_dir` as the configs say it)."""
    placed = [] if output_dir is None else [f"paths.output_dir={override_text(output_dir)}"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=[*placed, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # `${hydra:...}` interpolations read it
    return cfg


# config groups whose options describe a sweep: chosen without -m they would run one default job
SWEEP_GROUPS = ("sweep", "hparams_search")


def is_multirun(arguments: list[str]) -> bool:
    """Whether the command line starts a multirun (a sweep), the one place that decides it."""
    return any(argument in MULTIRUN_FLAGS for argument in arguments)


def as_multirun(arguments: list[str]) -> list[str]:
    """The command line, with -m added when it picks a sweep (sweep=..., hparams_search=...) without it:
    such an option varies its keys only in a multirun, and would otherwise train one default run."""
    if is_multirun(arguments):
        return arguments
    chosen = [f"{group}={value}" for group in SWEEP_GROUPS if (value := override_value(arguments, group)) is not None]
    if not chosen:
        return arguments
    log.warning("%s is a sweep: running it as a multirun (as with -m)", " ".join(chosen))
    return ["-m", *arguments]
