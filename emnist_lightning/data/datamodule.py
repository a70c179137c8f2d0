"""The EMNIST data module: one split (Balanced, Letters, ...) in memory, served to Lightning by index.

The whole split lives in memory as uint8 tensors. Batches are served by index (a sampler yields
a slice of one permutation, the dataset slices the tensors once) and normalised per batch after
the transfer to the device, so there is no per-sample Python work in the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from emnist_lightning.data.augment import BatchAugment
from emnist_lightning.data.download import Archive
from emnist_lightning.data.files import ImageSet, check_mapping, ensure_files, find_file, load_split
from emnist_lightning.data.splits import emnist_split
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


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> floats in [0, 1]."""
    return images.float().div_(255)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle. Each epoch's order depends on (seed, epoch) alone, so a run
    resumed from a checkpoint sees the same batches as one that never stopped."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class IndexBatches(Sampler[torch.Tensor]):
    """Batches of indices as slices of one permutation per epoch, made on the data's device.

    Compared with BatchSampler(RandomSampler), no Python list is built per batch, and for
    device-resident data the indices never cross from the host during the epoch. Lightning calls
    `set_epoch` before every epoch; `resume_at` skips the batches an interrupted epoch already trained.

    With several processes (DDP), `batch_size` is the global batch: every rank draws the same
    permutation and takes every `world_size`-th index of each batch, so the ranks' shards are disjoint,
    together make up the epoch, and one step of all ranks sees the batch one process would. Shuffled
    (training) epochs are padded with their first indices to a multiple of `world_size`, as
    DistributedSampler does, so every rank takes the same number of steps; evaluation is not padded, so
    no image is counted twice.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        device: torch.device | None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of world_size={world_size} ranks")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.device = device or torch.device("cpu")
        self.epoch = 0
        self.resume_position: tuple[int, int] | None = None  # (epoch, batches already trained)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        self.resume_position = (epoch, batches_done)

    @property
    def epoch_size(self) -> int:
        """Indices per epoch, over all ranks: the split, padded for training."""
        return self.size + (-self.size % self.world_size if self.shuffle else 0)

    def __len__(self) -> int:
        batches = -(-self.epoch_size // self.batch_size)
        last_batch = self.epoch_size - (batches - 1) * self.batch_size
        return batches - (self.rank >= last_batch)  # an evaluation rank may get nothing of a short last batch

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            )
            order = torch.cat([order, order[: self.epoch_size - self.size]])
        else:
            order = torch.arange(self.size)
        batches = [batch[self.rank :: self.world_size] for batch in order.to(self.device).split(self.batch_size)]
        skip = 0
        if self.resume_position is not None and self.resume_position[0] == self.epoch:
            skip = self.resume_position[1]
        self.resume_position = None
        yield from (batch for batch in batches[skip:] if len(batch))


class InMemoryDataset(Dataset):
    """A split indexed by a whole batch of indices at once (used with `batch_size=None`)."""

    def __init__(self, split: ImageSet) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.split.labels.device)
        # index_select: a third of the time of images[index] for a CPU batch (docs/performance.md)
        return self.split.images.index_select(0, index), self.split.labels.index_select(0, index)


class EMNISTDataModule(L.LightningDataModule):
    """One EMNIST split (`split`: balanced, byclass, bymerge, letters, digits or mnist), with a stratified,
    seeded validation set carved from its training part."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        split: str,
        seed: int,
        cache_dir: str | Path | None,
        cache_key_file: str | Path | None,
        archive_url: str | None,
        download: bool,
        archive_md5: str | None,
        val_fraction: float,
        batch_size: int,
        eval_batch_size: int | None,
        pin_memory: bool,
        device_resident: bool | str,
        augment: BatchAugment | None = None,
    ) -> None:
        """The keys of conf/data/emnist.yaml, whose values live there only; `eval_batch_size=None` is the
        training batch size, `augment=None` leaves training batches as they are."""
        super().__init__()
        eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1, e.g. 0.1")
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} and data.eval_batch_size={eval_batch_size} must be >= 1")
        self.split = emnist_split(split)
        self.data_dir = Path(data_dir).expanduser()
        self.download = download
        self.archive = Archive.of(archive_url, archive_md5)
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.pin_memory = pin_memory
        if device_resident not in (True, False, "auto"):
            raise ConfigError(f"data.device_resident={device_resident!r} must be true, false or auto")
        self.device_resident = device_resident
        self.augment = None if augment is None or augment.is_identity else augment
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None  # decoded splits (data/cache.py)
        self.cache_key_file = Path(cache_key_file).expanduser() if cache_key_file else None
        self.mean: float | None = None
        self.std: float | None = None
        self.train_set: ImageSet | None = None
        self.val_set: ImageSet | None = None
        self.test_set: ImageSet | None = None
        self.resume_position: tuple[int, int] | None = None  # (epoch, batches trained), from a checkpoint

    @property
    def classes(self) -> tuple[str, ...]:
        return self.split.classes

    @property
    def num_classes(self) -> int:
        return self.split.num_classes

    def source_files(self) -> list[Path]:
        """The split's files as found in data_dir (for the run's record of its data)."""
        found = (find_file(self.data_dir, name) for name in self.split.required_files)
        return [path for path in found if path is not None]

    def prepare_data(self) -> None:
        ensure_files(self.data_dir, self.split, self.download, self.archive)

    def setup(self, stage: str | None = None) -> None:
        """Load what `stage` needs: for fitting, train and validation (with their normalisation stats) and
        the test split; for testing, the test split alone, whose stats come from the checkpoint."""
        ensure_files(self.data_dir, self.split, download=False)
        check_mapping(self.data_dir, self.split)
        if stage in ("fit", "validate", None) and self.train_set is None:
            full_train = load_split(self.data_dir, self.split, "train", self.cache_dir, self.cache_key_file)
            train_indices, val_indices = stratified_split(full_train.labels, self.val_fraction, self.seed)
            self.train_set, self.val_set = full_train.subset(train_indices), full_train.subset(val_indices)
            self.mean, self.std = pixel_stats(self.train_set.images)
        # Fitting reads (and so validates) the test files too: a corrupt one then costs seconds, not a training.
        if stage in ("fit", "test", "predict", None) and self.test_set is None:
            self.test_set = load_split(self.data_dir, self.split, "test", self.cache_dir, self.cache_key_file)
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
        loader = self._loader(self.train_set, self.batch_size, shuffle=True)
        if self.resume_position is not None:
            loader.sampler.resume_at(*self.resume_position)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def _loader(self, split: ImageSet | None, batch_size: int, shuffle: bool) -> DataLoader:
        if split is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        device = split.labels.device
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if shuffle and batch_size % world_size:
            raise ConfigError(
                f"data.batch_size={batch_size} is the global batch and must divide evenly among the "
                f"{world_size} processes; use a multiple of {world_size}"
            )
        return DataLoader(
            InMemoryDataset(split),
            sampler=IndexBatches(len(split), batch_size, shuffle, self.seed, device, rank, world_size),
            batch_size=None,  # the dataset is indexed by a whole batch at once
            pin_memory=self.pin_memory and device.type == "cpu" and torch.cuda.is_available(),
            # Its own generator: otherwise every new iterator draws a seed from the global RNG, which
            # would make dropout masks depend on how many loaders a run created (sanity checks, resumes).
            generator=torch.Generator().manual_seed(self.seed),
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float, scaled to [0, 1] then standardised by the training split's stats.

        The same operations as ToTensor + Normalize, so the batches are bit-identical to theirs.
        (A 256-entry lookup table would be too, but indexing is slower than these passes on a CPU.)
        """
        return self.standardize(to_unit_range(images))

    def standardize(self, images: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError(
                "normalisation stats are unknown: set up the fit stage, or test with ckpt_path= a checkpoint"
            )
        return images.sub_(self.mean).div_(self.std)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        images, labels = batch
        images = to_unit_range(images)
        # Only training batches: validation and test measure the model on the images as they are.
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            images = self.augment(images)  # on the [0, 1] scale, where the background is 0
        return self.standardize(images), labels

    # Saved in checkpoints: the normalisation, so that evaluation normalises exactly as training did,
    # and where training stood in its epoch, so that a run resumed mid-epoch skips what it trained.
    def state_dict(self) -> dict[str, float | int | None]:
        state: dict[str, float | int | None] = {"mean": self.mean, "std": self.std}
        if self.trainer is not None and self.trainer.state.fn == "fit":
            epochs, batches = (
                self.trainer.fit_loop.epoch_progress.current,
                self.trainer.fit_loop.epoch_loop.batch_progress,
            )
            in_epoch = epochs.started > epochs.processed  # else the batch count is the finished epoch's
            state["epoch"] = epochs.processed  # the epoch number Lightning gives the sampler
            state["batches_done"] = batches.current.processed if in_epoch else 0
        return state

    def load_state_dict(self, state_dict: dict[str, float | int | None]) -> None:
        self.mean, self.std = state_dict["mean"], state_dict["std"]
        if "epoch" in state_dict:
            self.resume_position = (int(state_dict["epoch"]), int(state_dict["batches_done"]))
