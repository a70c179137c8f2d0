"""The CNN family: conv blocks (two or more conv layers in all), then a fully connected head."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.networks.layers import (
    ACTIVATIONS,
    IMAGE_SHAPE,
    check_dropout,
    make_activation,
    per_layer,
)
from emnist_lightning.models.networks.registry import LayerPicture, NetworkParts, register_network

POOLING: dict[str, type[nn.Module] | None] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "none": None}
MIN_CONV_LAYERS = 2


@register_network("cnn")
class CNN(nn.Module, NetworkParts):
    """Conv blocks [(Conv -> (BatchNorm) -> activation) x convs_per_block -> (pool) -> (Dropout2d)],
    then an MLP head. Two convs of 3x3 per block see as far as one 5x5 with fewer weights (VGG); a list
    gives each block its own count (a conv at 28x28 moves four times the activations of one at 14x14).

    channels_last runs the convolutions in NHWC layout, which oneDNN CPU kernels and tensor cores prefer.
    """

    def __init__(
        self,
        *,
        channels: Sequence[int],
        convs_per_block: int | Sequence[int],
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
        convs = per_layer(convs_per_block, len(channels), "model.convs_per_block")
        if min(convs, default=0) < 1 or sum(convs) < MIN_CONV_LAYERS:
            raise ConfigError(
                f"model.channels={channels} with model.convs_per_block={convs_per_block} makes "
                f"{sum(convs)} conv layers; the CNN family needs at least {MIN_CONV_LAYERS} and every "
                "block one, e.g. channels=[32,64] convs_per_block=1"
            )
        kernels = per_layer(kernel_size, len(channels), "model.kernel_size")
        pools = per_layer(pooling, len(channels), "model.pooling")
        check_dropout([conv_dropout, dropout], "model.dropout / model.conv_dropout")
        blocks: list[nn.Module] = []
        in_channels = IMAGE_SHAPE[0]
        for out_channels, block_convs, kernel, pool in zip(channels, convs, kernels, pools, strict=True):
            if pool not in POOLING:
                raise ConfigError(f"model.pooling '{pool}' is unknown; choose one of: {', '.join(POOLING)}")
            for _ in range(block_convs):
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

    def first_layer_picture(self, limit: int) -> LayerPicture:
        first_conv = next(m for m in self.features if isinstance(m, nn.Conv2d))
        filters = first_conv.weight.detach().float().cpu()[:, 0].numpy()
        return LayerPicture("filters", filters, f"First conv layer: {len(filters)} filters")

    @torch.no_grad()
    def feature_maps(self, image: torch.Tensor) -> list[np.ndarray]:
        """The activations after every conv layer."""
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        maps, features = [], image
        for layer in self.features:
            features = layer(features)
            if isinstance(layer, tuple(ACTIVATIONS.values())):
                maps.append(features[0].float().cpu().numpy())
        return maps
