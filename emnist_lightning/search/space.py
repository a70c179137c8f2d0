"""The search space, written in Hydra's sweep syntax and turned into Optuna distributions.

`hydra.sweeper.params` and sweep overrides on the command line use the same syntax:
`choice(relu, gelu)` or `relu,gelu` (categorical), `interval(0.0, 0.5)` (uniform floats),
`tag(log, interval(1e-4, 1e-2))` (log-uniform) and `range(1, 5)` (the integers 1 to 4).
"""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from emnist_lightning.errors import ConfigError


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{override.input_line}: the range holds no value")
        if not all(isinstance(bound, int) for bound in (sweep.start, sweep.stop, sweep.step)):
            return CategoricalDistribution(values)
        return IntDistribution(min(values), max(values), step=abs(int(sweep.step)))
    if isinstance(sweep, IntervalSweep):
        return FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
    raise ConfigError(f"{override.input_line}: not a search range; use choice(...), interval(...) or range(...)")


def search_space(params: dict[str, str], arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The distributions of `params` and of the sweep overrides among `arguments`, and the other
    arguments, which every trial keeps as they are."""
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except Exception as err:  # Hydra's grammar errors name the offending text
        raise ConfigError(f"hydra.sweeper.params: {err}") from err
    space, fixed = {}, []
    for override in overrides:
        if override.is_sweep_override():
            try:
                space[override.get_key_element()] = distribution(override)
            except ValueError as err:  # e.g. a log interval that starts at 0
                raise ConfigError(f"{override.input_line}: {err}") from err
        else:
            fixed.append(override.input_line)
    return space, fixed
