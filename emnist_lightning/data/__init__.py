"""EMNIST Balanced: the official files on disk (`files`, `idx`) and the data module that serves them."""

from emnist_lightning.data.datamodule import EMNISTDataModule
from emnist_lightning.data.files import BALANCED_CLASSES, MAPPING_FILE, NUM_CLASSES, SPLIT_FILES

__all__ = ["BALANCED_CLASSES", "MAPPING_FILE", "NUM_CLASSES", "SPLIT_FILES", "EMNISTDataModule"]
