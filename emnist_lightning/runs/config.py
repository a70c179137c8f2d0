"""Where the Hydra configs live, composing one outside a Hydra run (tests, benchmarks), reading a command line."""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config_dir() -> str:
    """conf/ inside an installed wheel, else the repository's top-level conf/."""
    packaged = PACKAGE_DIR / "conf"
    return str(packaged if packaged.is_dir() else PACKAGE_DIR.parent / "conf")


def compose(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as a run would, with `output_dir` as the run dir."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose(
            config_name, overrides=[f"paths.output_dir={output_dir}", *overrides], return_hydra_config=True
        )
    HydraConfig.instance().set_config(cfg)  # `${hydra:...}` interpolations read it
    return cfg


def argument_value(arguments: list[str], key: str) -> str | None:
    """The value a command line gives `key` (the last one wins, as in Hydra), or None."""
    values = [argument.split("=", 1)[1] for argument in arguments if argument.lstrip("+~").startswith(f"{key}=")]
    return values[-1] if values else None
