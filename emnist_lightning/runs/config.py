"""Where the Hydra configs live, composing one outside a Hydra run (tests, benchmarks), and reading a
command line's overrides with Hydra's own parser."""

from __future__ import annotations

import logging
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


MULTIRUN_FLAGS = ("-m", "--multirun")
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


def override_text(value: object) -> str:
    """`value` as Hydra's override grammar reads it back: quoted (single quotes, `\\'` inside) when it
    holds characters the grammar gives a meaning to, such as `=`, `,`, brackets or quotes."""
    text = str(value)
    if re.fullmatch(r"[\w./~+@:-]+", text):
        return text
    return "'" + text.replace("'", "\\'") + "'"
