"""EMNIST Balanced handwritten-character recognition with Lightning and Hydra."""

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.models import NETWORKS, EMNISTClassifier, load_classifier

__all__ = ["NETWORKS", "EMNISTClassifier", "EMNISTDataModule", "load_classifier"]
