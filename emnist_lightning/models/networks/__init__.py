"""The network families as plain `nn.Module`s, one module each, registered by name in `NETWORKS`.

Importing this package imports every family module in it, so a new family is one module here (a class
decorated with `@register_network`) plus its conf/model/ file; `classifier.py` trains any of them.
"""

from __future__ import annotations

import importlib
import pkgutil

from emnist_lightning.models.networks.layers import ACTIVATIONS, make_activation, per_layer
from emnist_lightning.models.networks.registry import (
    NETWORKS,
    LayerPicture,
    NetworkParts,
    build_network,
    register_network,
)

for _family in pkgutil.iter_modules(__path__):
    if _family.name not in ("layers", "registry"):
        importlib.import_module(f"{__name__}.{_family.name}")

from emnist_lightning.models.networks.cnn import CNN  # noqa: E402 (the families above are imported by now)
from emnist_lightning.models.networks.mlp import MLP  # noqa: E402

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "MLP",
    "NETWORKS",
    "LayerPicture",
    "NetworkParts",
    "build_network",
    "make_activation",
    "per_layer",
    "register_network",
]
