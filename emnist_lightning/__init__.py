"""EMNIST Balanced handwritten-character recognition with Lightning and Hydra."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The names below load their modules on first use (PEP 562), so that a submodule can be imported
# without torch and Lightning: the picture helper process (pictures/painter.py) needs only plots.
_EXPORTS = {
    "EMNISTDataModule": "emnist_lightning.data",
    "NETWORKS": "emnist_lightning.models",
    "EMNISTClassifier": "emnist_lightning.models",
    "load_classifier": "emnist_lightning.models",
}
__all__ = ["NETWORKS", "EMNISTClassifier", "EMNISTDataModule", "load_classifier"]

if TYPE_CHECKING:
    from emnist_lightning.data import EMNISTDataModule
    from emnist_lightning.models import NETWORKS, EMNISTClassifier, load_classifier


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
