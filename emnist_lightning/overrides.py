"""A command line's overrides, read and written with Hydra's own grammar: one reader (`override_value`) and
one writer (`override_text`), used by the commands, resume= and the search's sweeper alike."""

from __future__ import annotations

import re
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from emnist_lightning.errors import ConfigError

MULTIRUN_FLAGS = ("-m", "--multirun")
# characters that never need quoting (the grammar may still read a bare word as another type: checked)
BARE = re.compile(r"[\w./~+@:-]+")


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
    """`value` written so that Hydra's grammar reads it back as the same value of the same type: booleans
    and None as words, numbers as written, a string bare when it reads back as itself (so `true`, `1e-3` or
    `a=b` are quoted), else in single quotes, with the quote and the backslashes before a quote escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if BARE.fullmatch(text) and reads_back(text) == text:
        return text
    escaped = re.sub(r"(\\+)(?='|$)", lambda run: run.group(1) * 2, text).replace("'", "\\'")
    return f"'{escaped}'"


def reads_back(text: str) -> Any:
    """What Hydra reads `key=<text>` as; None where it cannot read it (a leading `~`, say)."""
    try:
        return override_value([f"key={text}"], "key")
    except ConfigError:
        return None
