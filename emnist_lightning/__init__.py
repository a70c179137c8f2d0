"""EMNIST handwritten-character recognition with Lightning and Hydra.

The library, bottom to top (each layer imports only those below it; `make lint` checks it): `errors`,
`data`, `models`, `pictures`, `inference`, `runs` and `search`, `training`; the commands are `cli/`.
"""

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.models import NETWORKS, EMNISTClassifier, load_classifier

__all__ = ["NETWORKS", "EMNISTClassifier", "EMNISTDataModule", "load_classifier"]
