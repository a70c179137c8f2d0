"""Where the Hydra configs live, composing one outside a Hydra run (tests, benchmarks), and reading a
command line's overrides with Hydra's own parser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config_dir() -> str:
    """conf/ inside an installed wheel, else the repository's top-level conf/."""
    packaged = PACKAGE_DIR / "conf"
    return str(packaged if packaged.is_dir() else PACKAGE_DIR.parent / "conf")


def compose(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as a run would, with `output_dir` as the run dir."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose(
            config_name,
            overrides=[f"paths.output_dir={override_text(output_dir)}", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)  # `${hydra:...}` interpolations read it
    return cfg


def parse_overrides(arguments: list[str]) -> list[Override]:
    """A command line's overrides as Hydra reads them. Hydra's flags (-m, --cfg job, -cn NAME) are not
    overrides; every override has an `=`, except a deletion (`~key`)."""
    parser, parsed = OverridesParser.create(), []
    for line in (a for a in arguments if not a.startswith("-") and ("=" in a or a.startswith("~"))):
        try:
            parsed += parser.parse_overrides([line])
        except HydraException as err:
            reason = str(err).splitlines()[0]
            raise ConfigError(
                f"cannot read the override '{line}' ({reason}); write key=value, +key=value or ~key"
            ) from err
    return parsed


def override_value(arguments: list[str], key: str) -> Any:
    """The value the command line gives `key`, typed as Hydra types it (the last one wins), or None."""
    values = [override.value() for override in parse_overrides(arguments) if override.key_or_group == key]
    return values[-1] if values else None


def override_text(value: object) -> str:
    """`value` as Hydra's override grammar reads it back: quoted (single quotes, `\\'` inside) when it
    holds characters the grammar gives a meaning to, such as `=`, `,`, brackets or quotes."""
    text = str(value)
    if re.fullmatch(r"[\w./~+@:-]+", text):
        return text
    return "'" + text.replace("'", "\\'") + "'"
