"""The EMNIST Balanced data module: in-memory splits served to Lightning by index.

The whole split lives in memory as uint8 tensors. Batches are served by index (a sampler yields
a slice of one permutation, the dataset slices the tensors once) and normalised per batch after
the transfer to the device, so there is no per-sample Python work in the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from emnist_lightning.data.files import BALANCED_CLASSES, Split, ensure_files, load_split, read_classes
from emnist_lightning.errors import ConfigError


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and (unbiased) std of uint8 pixels scaled to [0, 1], from a 256-bin histogram:
    exact, and without a float copy of the whole split."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = (counts * values).sum() / total
    variance = (counts * (values - mean) ** 2).sum() / (total - 1)
    return mean.item(), variance.sqrt().item()


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices with `val_fraction` of every class in validation."""
    generator = torch.Generator().manual_seed(seed)
    val_parts = []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        val_parts.append(members[: round(len(members) * val_fraction)])
    val_indices = torch.cat(val_parts).sort().values
    in_train = torch.ones(len(labels), dtype=torch.bool)
    in_train[val_indices] = False
    return in_train.nonzero().squeeze(1), val_indices


class IndexBatches(Sampler[torch.Tensor]):
    """Batches of indices as slices of one permutation per epoch, made on the data's device.

    Compared with BatchSampler(RandomSampler), no Python list is built per batch, and for
    device-resident data the indices never cross from the host during the epoch.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, seed: int, device: torch.device | None) -> None:
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.device = device or torch.device("cpu")
        self.generator = torch.Generator().manual_seed(seed)  # advances every epoch, reproducibly

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.size, generator=self.generator) if self.shuffle else torch.arange(self.size)
        order = order.to(self.device)
        yield from order.split(self.batch_size)


class InMemoryDataset(Dataset):
    """A split indexed by a whole batch of indices at once (used with `batch_size=None`)."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.split.labels.device)
        return self.split.images[index], self.split.labels[index]


class EMNISTDataModule(L.LightningDataModule):
    """EMNIST Balanced with a stratified, seeded validation split carved from train."""

    def __init__(
        self,
        data_dir: str | Path = "data/emnist",
        download: bool = True,
        val_fraction: float = 0.1,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        seed: int = 0,
        pin_memory: bool = False,
        device_resident: bool | str = "auto",
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1, e.g. 0.1")
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} and data.eval_batch_size={eval_batch_size} must be >= 1")
        self.data_dir = Path(data_dir).expanduser()
        self.download = download
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.pin_memory = pin_memory
        if device_resident not in (True, False, "auto"):
            raise ConfigError(f"data.device_resident={device_resident!r} must be true, false or auto")
        self.device_resident = device_resident
        self.classes: tuple[str, ...] = BALANCED_CLASSES
        self.mean: float | None = None
        self.std: float | None = None
        self.train_set: Split | None = None
        self.val_set: Split | None = None
        self.test_set: Split | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare_data(self) -> None:
        ensure_files(self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load what `stage` needs: train and validation for fitting (and their normalisation stats),
        the test split alone for testing, whose stats come from the checkpoint or an earlier fit."""
        ensure_files(self.data_dir, download=False)
        self.classes = read_classes(self.data_dir)
        if stage in ("fit", "validate", None) and self.train_set is None:
            full_train = load_split(self.data_dir, "train")
            train_indices, val_indices = stratified_split(full_train.labels, self.val_fraction, self.seed)
            self.train_set, self.val_set = full_train.subset(train_indices), full_train.subset(val_indices)
            self.mean, self.std = pixel_stats(self.train_set.images)
        if stage in ("test", "predict", None) and self.test_set is None:
            self.test_set = load_split(self.data_dir, "test")
        device = self.resident_device()
        if device is not None:
            self.train_set, self.val_set, self.test_set = (
                split.to(device) if split is not None else None
                for split in (self.train_set, self.val_set, self.test_set)
            )

    def resident_device(self) -> torch.device | None:
        """The device to keep the data on, or None to serve it from host memory."""
        if self.trainer is None or self.device_resident is False:
            return None
        device = self.trainer.strategy.root_device
        if self.device_resident == "auto" and device.type != "cuda":
            return None
        return device

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def _loader(self, split: Split | None, batch_size: int, shuffle: bool) -> DataLoader:
        if split is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        device = split.labels.device
        return DataLoader(
            InMemoryDataset(split),
            sampler=IndexBatches(len(split), batch_size, shuffle, self.seed, device),
            batch_size=None,  # the dataset is indexed by a whole batch at once
            pin_memory=self.pin_memory and device.type == "cpu" and torch.cuda.is_available(),
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float, scaled to [0, 1] then standardised by the training split's stats.

        The same operations as ToTensor + Normalize, so the batches are bit-identical to theirs.
        (A 256-entry lookup table would be too, but indexing is slower than these passes on a CPU.)
        """
        if self.mean is None or self.std is None:
            raise RuntimeError(
                "normalisation stats are unknown: set up the fit stage, or test with ckpt_path= a checkpoint"
            )
        return images.float().div_(255).sub_(self.mean).div_(self.std)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        images, labels = batch
        return self.normalize(images), labels

    # Saved in checkpoints so that evaluation normalises exactly as training did.
    def state_dict(self) -> dict[str, float | None]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, float | None]) -> None:
        self.mean, self.std = state_dict["mean"], state_dict["std"]
