"""The model families as plain networks (`networks`), the one training module (`classifier`), schedules (`optim`)."""

from emnist_lightning.models.checkpoints import load_classifier
from emnist_lightning.models.classifier import EMNISTClassifier
from emnist_lightning.models.networks import NETWORKS

__all__ = ["NETWORKS", "EMNISTClassifier", "load_classifier"]
