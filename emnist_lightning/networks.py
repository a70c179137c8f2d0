"""The two model families as plain `nn.Module`s; `module.py` wraps them for training."""

from __future__ import annotations

from collections.abc import Sequence

import torch
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
POOLING: dict[str, type[nn.Module] | None] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "none": None}
IMAGE_SHAPE = (1, 28, 28)
MIN_MLP_HIDDEN_LAYERS = 3
MIN_CNN_CONV_LAYERS = 2


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


class MLP(nn.Sequential):
    """Flatten -> [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden layer -> Linear."""

    def __init__(
        self,
        hidden_dims: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float | Sequence[float] = 0.0,
    ) -> None:
        hidden_dims = list(hidden_dims)
        if len(hidden_dims) < MIN_MLP_HIDDEN_LAYERS:
            raise ConfigError(
                f"model.hidden_dims={hidden_dims} has {len(hidden_dims)} hidden layers; the MLP "
                f"family needs at least {MIN_MLP_HIDDEN_LAYERS}, e.g. [512,256,128]"
            )
        rates = per_layer(dropout, len(hidden_dims), "model.dropout")
        check_dropout(rates, "model.dropout")
        layers: list[nn.Module] = [nn.Flatten()]
        in_features = IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
        for width, rate in zip(hidden_dims, rates, strict=True):
            # A bias before batch norm is redundant: BN's shift replaces it.
            layers.append(nn.Linear(in_features, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(make_activation(activation))
            if rate > 0:
                layers.append(nn.Dropout(rate))
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


class CNN(nn.Module):
    """Conv blocks [Conv -> (BatchNorm) -> activation -> (pool) -> (Dropout2d)], then an MLP head."""

    def __init__(
        self,
        channels: Sequence[int],
        num_classes: int,
        kernel_size: int | Sequence[int] = 3,
        pooling: str | Sequence[str] = "max",
        head_dims: Sequence[int] = (256,),
        activation: str = "relu",
        batch_norm: bool = False,
        conv_dropout: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = list(channels)
        if len(channels) < MIN_CNN_CONV_LAYERS:
            raise ConfigError(
                f"model.channels={channels} has {len(channels)} conv layers; the CNN family needs "
                f"at least {MIN_CNN_CONV_LAYERS}, e.g. [32,64]"
            )
        kernels = per_layer(kernel_size, len(channels), "model.kernel_size")
        pools = per_layer(pooling, len(channels), "model.pooling")
        check_dropout([conv_dropout, dropout], "model.dropout / model.conv_dropout")
        blocks: list[nn.Module] = []
        in_channels = IMAGE_SHAPE[0]
        for out_channels, kernel, pool in zip(channels, kernels, pools, strict=True):
            if pool not in POOLING:
                raise ConfigError(f"model.pooling '{pool}' is unknown; choose one of: {', '.join(POOLING)}")
            blocks.append(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_channels))
            blocks.append(make_activation(activation))
            if POOLING[pool] is not None:
                blocks.append(POOLING[pool](2))
            if conv_dropout > 0:
                blocks.append(nn.Dropout2d(conv_dropout))
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        feature_shape = self._feature_shape()
        if min(feature_shape[1:]) < 1:
            raise ConfigError(
                f"the 28x28 input shrinks to {feature_shape[1]}x{feature_shape[2]} after "
                f"{sum(p != 'none' for p in pools)} pooling layers; set some of model.pooling to none"
            )
        head: list[nn.Module] = [nn.Flatten()]
        in_features = feature_shape.numel()
        for width in head_dims:
            head += [nn.Linear(in_features, width), make_activation(activation)]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            in_features = width
        head.append(nn.Linear(in_features, num_classes))
        self.head = nn.Sequential(*head)

    @torch.no_grad()
    def _feature_shape(self) -> torch.Size:
        try:
            return self.features(torch.zeros(1, *IMAGE_SHAPE)).shape[1:]
        except RuntimeError as err:  # a pool on a 1x1 map fails before we can check the size
            raise ConfigError(f"the conv blocks do not fit a 28x28 input ({err}); use fewer pooling layers") from err

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
