"""EMNIST Balanced handwritten-character recognition with Lightning and Hydra."""

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.module import CNNClassifier, EMNISTClassifier, MLPClassifier, load_classifier

__all__ = [
    "CNNClassifier",
    "EMNISTClassifier",
    "EMNISTDataModule",
    "MLPClassifier",
    "load_classifier",
]
