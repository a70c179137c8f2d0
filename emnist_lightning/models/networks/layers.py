"""Building blocks the network families share: activations by name, per-layer values, checks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from emnist_lightning.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
IMAGE_SHAPE = (1, 28, 28)


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}") from None


def per_layer(value: float | str | Sequence, count: int, name: str) -> list:
    """One value per layer: a scalar is repeated, a list must have one entry per layer."""
    if isinstance(value, (str, int, float)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ConfigError(
            f"{name} has {len(values)} entries but the model has {count} layers; give one per layer or a single value"
        )
    return values


def check_dropout(rates: Sequence[float], name: str) -> None:
    for rate in rates:
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"{name}={rate} must be in [0, 1)")
