"""The MLP family: three or more fully connected hidden layers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.networks.layers import IMAGE_SHAPE, check_dropout, make_activation, per_layer
from emnist_lightning.models.networks.registry import LayerPicture, NetworkParts, register_network

MIN_HIDDEN_LAYERS = 3


@register_network("mlp")
class MLP(nn.Sequential, NetworkParts):
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
        if len(hidden_dims) < MIN_HIDDEN_LAYERS:
            raise ConfigError(
                f"model.hidden_dims={hidden_dims} has {len(hidden_dims)} hidden layers; the MLP "
                f"family needs at least {MIN_HIDDEN_LAYERS}, e.g. [512,256,128]"
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

    def first_layer_picture(self, limit: int) -> LayerPicture:
        """The first layer's weights of its `limit` strongest units, as 28x28 images."""
        first = next(m for m in self.modules() if isinstance(m, nn.Linear)).weight.detach().float().cpu()
        strongest = first.norm(dim=1).argsort(descending=True)[:limit]
        images = first[strongest].reshape(-1, *IMAGE_SHAPE[1:]).numpy()
        return LayerPicture("first_layer", images, f"First-layer weights of the {len(strongest)} strongest units")
