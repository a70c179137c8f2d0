"""EMNIST: its six splits (`splits`), their official files on disk (`files`, `idx`) and the data module
that serves one of them."""

from emnist_lightning.data.datamodule import EMNISTDataModule
from emnist_lightning.data.splits import SPLITS, EMNISTSplit, emnist_split

__all__ = ["SPLITS", "EMNISTDataModule", "EMNISTSplit", "emnist_split"]
