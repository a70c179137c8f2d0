"""EMNIST Balanced on disk: finding (or downloading) the official files and reading one split.

Every file is validated as it is read (gzip integrity, IDX header, counts, label range), so a
problem is one error naming the file and the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emnist_lightning.data import cache, idx
from emnist_lightning.errors import DataError

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


def load_split(data_dir: Path, split: str, num_classes: int = NUM_CLASSES, cache_dir: Path | None = None) -> Split:
    """Read and validate one official split, turning the stored (transposed) images upright. With a
    `cache_dir`, a split decoded before from the same files is read from there (data/cache.py)."""
    images_name, labels_name = SPLIT_FILES[split]
    images_path, labels_path = find_file(data_dir, images_name), find_file(data_dir, labels_name)
    if images_path is None or labels_path is None:
        raise DataError(f"'{data_dir}' lacks the {split} files; run with data.download=true or fix data.data_dir")

    def decode() -> tuple[np.ndarray, np.ndarray]:
        return decode_split(images_path, labels_path, num_classes)

    sources = (images_path, labels_path)
    images, labels = cache.cached_arrays(cache_dir, split, sources, decode) if cache_dir else decode()
    if len(labels) != OFFICIAL_COUNTS[split]:
        log.warning(
            "%s split has %d images, not the official %d: this is not the official EMNIST Balanced "
            "split, so results are not comparable with published ones",
            split,
            len(labels),
            OFFICIAL_COUNTS[split],
        )
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def decode_split(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Upright (N, 1, 28, 28) uint8 images and int64 labels of two IDX files, checked against each other."""
    images = read_upright_images(images_path).numpy()
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
    return images, labels.astype("int64")


def read_upright_images(path: Path) -> torch.Tensor:
    """(N, 1, 28, 28) uint8 images of an IDX file, turned upright: EMNIST's files store them transposed."""
    return torch.from_numpy(idx.read_images(path).copy()).transpose(1, 2).contiguous().unsqueeze(1)
