"""The plug-in point of the network families: `@register_network(name)` puts a class in `NETWORKS`, and
`NetworkParts` is what the rest of the package asks of a network beyond its forward pass.

Their arguments have no defaults in code: the defaults live in conf/model/, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from emnist_lightning.errors import ConfigError

# The registry: filled once, as each family's module is imported (networks/__init__.py imports them all).
NETWORKS: dict[str, type[nn.Module]] = {}
NetworkClass = TypeVar("NetworkClass", bound=type[nn.Module])


def register_network(name: str) -> Callable[[NetworkClass], NetworkClass]:
    """Make the decorated class the network `model.network=<name>` builds."""

    def register(cls: NetworkClass) -> NetworkClass:
        if name in NETWORKS:
            raise ValueError(f"two network families are registered as '{name}'")
        NETWORKS[name] = cls
        return cls

    return register


@dataclass(frozen=True)
class LayerPicture:
    """Weights of a network's first layer drawn as small images: `name` names the file (model_<name>.png)
    and the TensorBoard tag (model/<name>)."""

    name: str
    images: np.ndarray  # (N, H, W)
    title: str


class NetworkParts:
    """What training and the pictures need from a network, with the defaults that fit most families."""

    def penalized_weights(self) -> Iterator[nn.Parameter]:
        """The weights L1 and L2 apply to: those of linear and conv layers; biases and norm parameters are
        not penalised."""
        assert isinstance(self, nn.Module)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                yield module.weight

    def first_layer_picture(self, limit: int) -> LayerPicture | None:
        """At most `limit` images of what the first layer learned, or None for nothing to draw."""
        return None

    def feature_maps(self, image: torch.Tensor) -> list[np.ndarray]:
        """The (C, H, W) activations of one (1, 1, 28, 28) image after each stage, or [] for none."""
        return []


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
