"""EMNIST Balanced: locating (or downloading) the official files and serving them to Lightning.

The whole split lives in memory as uint8 tensors. Batches are served by index (a sampler yields
a list of indices, the dataset slices the tensors once) and normalised per batch after the
transfer to the device, so there is no per-sample Python work in the training loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from emnist_lightning import idx
from emnist_lightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLIT_FILES = {
    "train": ("emnist-balanced-train-images-idx3-ubyte", "emnist-balanced-train-labels-idx1-ubyte"),
    "test": ("emnist-balanced-test-images-idx3-ubyte", "emnist-balanced-test-labels-idx1-ubyte"),
}
MAPPING_FILE = "emnist-balanced-mapping.txt"
OFFICIAL_COUNTS = {"train": 112_800, "test": 18_800}
# The official Balanced mapping: digits, upper case, and the lower-case letters that do not
# look like their capitals.
BALANCED_CLASSES: tuple[str, ...] = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt")
NUM_CLASSES = len(BALANCED_CLASSES)


def candidate_dirs(data_dir: Path) -> list[Path]:
    """Where the files may lie: the folder itself, or torchvision's download layout inside it."""
    return [data_dir, data_dir / "EMNIST" / "raw"]


def find_file(data_dir: Path, name: str) -> Path | None:
    for folder in candidate_dirs(data_dir):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def required_files() -> list[str]:
    return [name for pair in SPLIT_FILES.values() for name in pair]


def missing_files(data_dir: Path) -> list[str]:
    return [name for name in required_files() if find_file(data_dir, name) is None]


def download_official(data_dir: Path) -> None:
    """Fetch the official EMNIST archive (md5 checked by torchvision) into data_dir/EMNIST/raw."""
    from torchvision.datasets import EMNIST

    log.info("Downloading the official EMNIST archive (about 560 MB) into %s", data_dir)
    EMNIST(root=str(data_dir), split="balanced", download=True)


def ensure_files(data_dir: Path, download: bool) -> None:
    """Make sure the four Balanced files are present, downloading them when allowed."""
    missing = missing_files(data_dir)
    if not missing:
        return
    reason = "download is off (data.download=false)"
    if download:
        try:
            download_official(data_dir)
        except Exception as err:  # any network, disk or checksum failure means the same fix
            reason = f"the download failed ({type(err).__name__}: {err})"
        missing = missing_files(data_dir)
        if not missing:
            return
    raise DataError(
        f"EMNIST Balanced files not found in '{data_dir}' (nor in its EMNIST/raw/): missing "
        f"{', '.join(f'{name}[.gz]' for name in missing)}; {reason}. Fix: go online and run with "
        "data.download=true, or point data.data_dir (or EMNIST_DATA_DIR) at a folder holding "
        "the official files"
    )


def read_classes(data_dir: Path) -> tuple[str, ...]:
    """Label -> character, from the official mapping file when present, else the built-in one."""
    path = next((d / MAPPING_FILE for d in candidate_dirs(data_dir) if (d / MAPPING_FILE).is_file()), None)
    if path is None:
        return BALANCED_CLASSES
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        mapping = {int(label): chr(int(code)) for label, code in rows}
    except ValueError as err:
        raise DataError(
            f"{path}: not an EMNIST mapping file (expected lines 'label ascii_code'): {err}; "
            "delete it to use the built-in Balanced mapping"
        ) from err
    if sorted(mapping) != list(range(NUM_CLASSES)):
        raise DataError(
            f"{path}: maps {len(mapping)} labels, expected 0..{NUM_CLASSES - 1} (EMNIST Balanced); "
            "delete it to use the built-in mapping"
        )
    return tuple(mapping[label] for label in range(NUM_CLASSES))


@dataclass(frozen=True)
class Split:
    """One split in memory: upright (N, 1, 28, 28) uint8 images and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> Split:
        return Split(self.images[indices], self.labels[indices])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


def load_split(data_dir: Path, split: str, num_classes: int = NUM_CLASSES) -> Split:
    """Read and validate one official split, turning the stored (transposed) images upright."""
    images_name, labels_name = SPLIT_FILES[split]
    images_path, labels_path = find_file(data_dir, images_name), find_file(data_dir, labels_name)
    if images_path is None or labels_path is None:
        raise DataError(f"'{data_dir}' lacks the {split} files; run with data.download=true or fix data.data_dir")
    images = idx.read_images(images_path)
    labels = idx.read_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} "
            "labels; the two files are from different downloads: fetch both again"
        )
    if labels.max(initial=0) >= num_classes:
        raise DataError(
            f"{labels_path}: label {int(labels.max())} is outside 0..{num_classes - 1}; these are "
            "not EMNIST Balanced labels (another EMNIST split?)"
        )
    if len(labels) != OFFICIAL_COUNTS[split]:
        log.warning(
            "%s split has %d images, not the official %d: this is not the official EMNIST Balanced "
            "split, so results are not comparable with published ones",
            split,
            len(labels),
            OFFICIAL_COUNTS[split],
        )
    upright = torch.from_numpy(images.copy()).transpose(1, 2).contiguous().unsqueeze(1)
    return Split(upright, torch.from_numpy(labels.astype("int64")))


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
        ensure_files(self.data_dir, download=False)
        self.classes = read_classes(self.data_dir)
        if self.train_set is None:
            full_train = load_split(self.data_dir, "train")
            train_indices, val_indices = stratified_split(full_train.labels, self.val_fraction, self.seed)
            self.train_set, self.val_set = full_train.subset(train_indices), full_train.subset(val_indices)
            # Evaluation from a checkpoint replaces these with the training run's (load_state_dict).
            self.mean, self.std = pixel_stats(self.train_set.images)
        if stage in ("test", "predict", None) and self.test_set is None:
            self.test_set = load_split(self.data_dir, "test")
        device = self.resident_device()
        if device is not None:
            self.train_set, self.val_set = self.train_set.to(device), self.val_set.to(device)
            self.test_set = self.test_set.to(device) if self.test_set is not None else None

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
        (A 256-entry lookup table would be too, but indexing is 7x slower than these passes on a CPU.)
        """
        if self.mean is None or self.std is None:
            raise RuntimeError("normalisation stats are unknown: call setup() first")
        return images.float().div_(255).sub_(self.mean).div_(self.std)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        images, labels = batch
        return self.normalize(images), labels

    # Saved in checkpoints so that evaluation normalises exactly as training did.
    def state_dict(self) -> dict[str, float | None]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, float | None]) -> None:
        self.mean, self.std = state_dict["mean"], state_dict["std"]
