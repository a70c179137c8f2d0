"""The two model families as plain `nn.Module`s, by name in `NETWORKS`; `classifier.py` trains them.

Their arguments have no defaults here: the defaults live in conf/model/, in one place.
"""

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
        *,
        hidden_dims: Sequence[int],
        activation: str,
        batch_norm: bool,
        dropout: float | Sequence[float],
        num_classes: int,
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
    """Conv blocks [(Conv -> (BatchNorm) -> activation) x convs_per_block -> (pool) -> (Dropout2d)],
    then an MLP head. Two convs of 3x3 per block see as far as one 5x5 with fewer weights (VGG).

    channels_last runs the convolutions in NHWC layout, which oneDNN CPU kernels and tensor cores prefer.
    """

    def __init__(
        self,
        *,
        channels: Sequence[int],
        convs_per_block: int,
        kernel_size: int | Sequence[int],
        pooling: str | Sequence[str],
        head_dims: Sequence[int],
        activation: str,
        batch_norm: bool,
        conv_dropout: float,
        dropout: float,
        channels_last: bool,
        num_classes: int,
    ) -> None:
        super().__init__()
        channels = list(channels)
        if convs_per_block < 1 or len(channels) * convs_per_block < MIN_CNN_CONV_LAYERS:
            raise ConfigError(
                f"model.channels={channels} with model.convs_per_block={convs_per_block} makes "
                f"{len(channels) * convs_per_block} conv layers; the CNN family needs at least "
                f"{MIN_CNN_CONV_LAYERS}, e.g. channels=[32,64] convs_per_block=1"
            )
        kernels = per_layer(kernel_size, len(channels), "model.kernel_size")
        pools = per_layer(pooling, len(channels), "model.pooling")
        check_dropout([conv_dropout, dropout], "model.dropout / model.conv_dropout")
        blocks: list[nn.Module] = []
        in_channels = IMAGE_SHAPE[0]
        for out_channels, kernel, pool in zip(channels, kernels, pools, strict=True):
            if pool not in POOLING:
                raise ConfigError(f"model.pooling '{pool}' is unknown; choose one of: {', '.join(POOLING)}")
            for _ in range(convs_per_block):
                blocks.append(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=not batch_norm))
                if batch_norm:
                    blocks.append(nn.BatchNorm2d(out_channels))
                blocks.append(make_activation(activation))
                in_channels = out_channels
            if POOLING[pool] is not None:
                blocks.append(POOLING[pool](2))
            if conv_dropout > 0:
                blocks.append(nn.Dropout2d(conv_dropout))
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
        self.channels_last = channels_last
        if channels_last:  # weights and inputs both NHWC, so convolutions need no layout changes
            self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def _feature_shape(self) -> torch.Size:
        self.features.eval()  # batch norm in training mode refuses the probe's single 1x1 value
        try:
            return self.features(torch.zeros(1, *IMAGE_SHAPE)).shape[1:]
        except RuntimeError as err:  # a pool on a 1x1 map fails before we can check the size
            raise ConfigError(f"the conv blocks do not fit a 28x28 input ({err}); use fewer pooling layers") from err
        finally:
            self.features.train()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(images))


NETWORKS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN}


def build_network(name: str, num_classes: int, **arguments: object) -> nn.Module:
    """The network called `name` in `NETWORKS`, built from its config keys."""
    if name not in NETWORKS:
        raise ConfigError(f"model.network='{name}' is unknown; choose one of: {', '.join(NETWORKS)}")
    try:
        return NETWORKS[name](num_classes=num_classes, **arguments)
    except TypeError as err:  # a missing or unknown key: "MLP.__init__() got an unexpected keyword ..."
        reason = str(err).split("() ", 1)[-1]
        raise ConfigError(
            f"model (network {name}): {reason}; the keys of conf/model/{name}.yaml are the valid ones"
        ) from err
