"""The ResNet family: a conv stem, then stages of residual blocks (He et al. 2016), global average pooling
and one linear layer. Each stage after the first halves the image and widens the channels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.networks.layers import IMAGE_SHAPE, check_dropout, make_activation
from emnist_lightning.models.networks.registry import LayerPicture, NetworkParts, register_network


class ResidualBlock(nn.Module):
    """activation(x + BN(conv(activation(BN(conv(x)))))), with a strided 1x1 conv on the shortcut where the
    block changes the shape."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            make_activation(activation),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        reshapes = stride != 1 or in_channels != out_channels
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
            if reshapes
            else nn.Identity()
        )
        self.activation = make_activation(activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(features) + self.shortcut(features))


@register_network("resnet")
class ResNet(nn.Module, NetworkParts):
    """stem (3x3 conv, BN, activation) -> one stage of `blocks_per_stage` residual blocks per entry of
    `widths` -> global average pool -> (Dropout) -> Linear."""

    def __init__(
        self,
        *,
        widths: Sequence[int],
        blocks_per_stage: int,
        activation: str,
        dropout: float,
        channels_last: bool,
        num_classes: int,
    ) -> None:
        super().__init__()
        widths = list(widths)
        if not widths or blocks_per_stage < 1:
            raise ConfigError(
                f"model.widths={widths} with model.blocks_per_stage={blocks_per_stage} builds no residual block; "
                "give one width per stage and 1 or more blocks, e.g. widths=[32,64,128] blocks_per_stage=2"
            )
        if len(widths) > 3:  # each stage after the first halves the image: 28 -> 14 -> 7 -> 4
            raise ConfigError(f"model.widths={widths} has {len(widths)} stages; a 28x28 image fits at most 3")
        check_dropout([dropout], "model.dropout")
        self.stem = nn.Sequential(
            nn.Conv2d(IMAGE_SHAPE[0], widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            make_activation(activation),
        )
        stages, in_channels = [], widths[0]
        for stage, width in enumerate(widths):
            blocks = [
                ResidualBlock(in_channels if block == 0 else width, width, 2 if stage and not block else 1, activation)
                for block in range(blocks_per_stage)
            ]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(in_channels, num_classes))
        self.head = nn.Sequential(*head)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.stages(self.stem(images)))

    def first_layer_picture(self, limit: int) -> LayerPicture:
        filters = self.stem[0].weight.detach().float().cpu()[:, 0].numpy()
        return LayerPicture("filters", filters, f"Stem conv layer: {len(filters)} filters")

    @torch.no_grad()
    def feature_maps(self, image: torch.Tensor) -> list[np.ndarray]:
        """The activations after the stem and after every stage."""
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        maps, features = [], self.stem(image)
        maps.append(features[0].float().cpu().numpy())
        for stage in self.stages:
            features = stage(features)
            maps.append(features[0].float().cpu().numpy())
        return maps
