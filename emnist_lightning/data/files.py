"""EMNIST on disk: finding (or downloading) the official files of a split and reading its train or test part.

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
from emnist_lightning.data.download import Archive, fetch_archive, one_downloader
from emnist_lightning.data.splits import EMNISTSplit
from emnist_lightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def candidate_dirs(data_dir: Path) -> list[Path]:
    """Where the files may lie: the folder itself, or torchvision's download layout inside it."""
    return [data_dir, data_dir / "EMNIST" / "raw"]


def find_file(data_dir: Path, name: str) -> Path | None:
    for folder in candidate_dirs(data_dir):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def missing_files(data_dir: Path, split: EMNISTSplit) -> list[str]:
    return [name for name in split.required_files if find_file(data_dir, name) is None]


def incomplete_files(data_dir: Path, split: EMNISTSplit) -> dict[Path, str]:
    """The split's files that are present but cut short (an interrupted download or copy), with why."""
    found = (find_file(data_dir, name) for name in split.required_files)
    reasons = {path: idx.incompleteness(path) for path in found if path is not None}
    return {path: reason for path, reason in reasons.items() if reason is not None}


def ensure_files(data_dir: Path, split: EMNISTSplit, download: bool, archive: Archive | None = None) -> None:
    """Make sure the split's four files are present and whole, downloading the archive when allowed (into
    data_dir/EMNIST/raw, whose cut-short files it replaces)."""
    raw_dir = candidate_dirs(data_dir)[-1]
    missing, incomplete = missing_files(data_dir, split), incomplete_files(data_dir, split)
    if not missing and not incomplete:
        return
    reason = "download is off (data.download=false)"
    if download and any(path.parent != raw_dir for path in incomplete):
        reason = "it lies outside EMNIST/raw/, which a download fills, so it is not replaced"
    elif download:
        try:
            raw_dir.mkdir(parents=True, exist_ok=True)
            lock = raw_dir.with_name(f".{raw_dir.name}.download.lock")
            with one_downloader(lock, f"EMNIST into {raw_dir}"):  # parallel jobs: the first downloads
                missing, incomplete = missing_files(data_dir, split), incomplete_files(data_dir, split)
                if missing or incomplete:
                    fetch_archive(archive or Archive(), raw_dir)
        except (DataError, OSError, ValueError) as err:  # network, disk, checksum: the same fix
            reason = f"the download failed ({err if isinstance(err, DataError) else f'{type(err).__name__}: {err}'})"
        missing, incomplete = missing_files(data_dir, split), incomplete_files(data_dir, split)
        if not missing and not incomplete:
            return
    if incomplete:
        path, why = next(iter(incomplete.items()))
        raise DataError(
            f"{path} is incomplete ({why}); {reason}. Fix: delete it and download it again (data.download=true), "
            "or copy the file again"
        )
    raise DataError(
        f"EMNIST {split.title} files not found in '{data_dir}' (nor in its EMNIST/raw/): missing "
        f"{', '.join(f'{name}[.gz]' for name in missing)}; {reason}. Fix: go online and run with "
        "data.download=true, or point data.data_dir (or EMNIST_DATA_DIR) at a folder holding "
        "the official files"
    )


def check_mapping(data_dir: Path, split: EMNISTSplit) -> None:
    """Refuse a mapping file (`label ascii_code`, or `label upper lower` for Letters) that disagrees with
    the split's built-in classes: the files would then be another split's, or not EMNIST's."""
    found = (d / split.mapping_file for d in candidate_dirs(data_dir))
    path = next((candidate for candidate in found if candidate.is_file()), None)
    if path is None:
        return
    try:
        rows = [[int(value) for value in line.split()] for line in path.read_text().splitlines() if line.strip()]
        mapping = {label: "/".join(chr(code) for code in codes) for label, *codes in rows}
    except ValueError as err:
        raise DataError(
            f"{path}: not an EMNIST mapping file (expected lines 'label ascii_code'): {err}; delete it, "
            f"the {split.name} classes are built in"
        ) from err
    labels = range(split.first_label, split.first_label + split.num_classes)
    if [mapping.get(label) for label in labels] != list(split.classes) or len(mapping) != split.num_classes:
        raise DataError(
            f"{path}: maps {len(mapping)} labels that are not the official {split.name} classes "
            f"({split.num_classes}: {''.join(split.classes[:12])}...); it belongs to other files: fetch "
            f"the {split.name} files again, or delete it (the classes are built in)"
        )


@dataclass(frozen=True)
class ImageSet:
    """A split's train or test part in memory: upright (N, 1, 28, 28) uint8 images and int64 labels 0..n-1."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices])

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))


def load_split(
    data_dir: Path, split: EMNISTSplit, stage: str, cache_dir: Path | None = None, cache_key_file: Path | None = None
) -> ImageSet:
    """Read and validate the `stage` part ('train' or 'test') of one official split, turning the stored
    (transposed) images upright. With a `cache_dir`, a part decoded before from the same files is read
    from there, sealed with the key in `cache_key_file` (data/cache.py)."""
    images_name, labels_name = split.file_names(stage)
    images_path, labels_path = find_file(data_dir, images_name), find_file(data_dir, labels_name)
    if images_path is None or labels_path is None:
        raise DataError(
            f"'{data_dir}' lacks the {split.name} {stage} files; run with data.download=true or fix data.data_dir"
        )

    def decode() -> tuple[np.ndarray, np.ndarray]:
        return decode_split(images_path, labels_path, split)

    def check(images: np.ndarray, labels: np.ndarray) -> str | None:
        return check_decoded(images, labels, split)

    sources, name = (images_path, labels_path), f"{split.name}-{stage}"
    if cache_dir:
        if cache_key_file is None:
            raise ConfigError("data.cache_dir needs data.cache_key_file, the key its entries are sealed with")
        version = cache.decoder_version([Path(__file__), Path(idx.__file__)])
        images, labels = cache.cached_arrays(cache_dir, cache_key_file, name, sources, decode, version, check)
    else:
        images, labels = decode()
    if len(labels) != split.official_count(stage):
        log.warning(
            "%s %s split has %d images, not the official %d: this is not the official EMNIST %s split, so "
            "results are not comparable with published ones",
            split.name,
            stage,
            len(labels),
            split.official_count(stage),
            split.name,
        )
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels))


def check_decoded(images: np.ndarray, labels: np.ndarray, split: EMNISTSplit) -> str | None:
    """Why arrays are not what `decode_split` makes of `split`'s files, or None."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        return f"images are {images.dtype} {images.shape}, not uint8 (N, 1, 28, 28)"
    if labels.dtype != np.int64 or labels.shape != (len(images),):
        return f"labels are {labels.dtype} {labels.shape}, not int64 ({len(images)},)"
    if len(labels) and (labels.min() < 0 or labels.max() >= split.num_classes):
        return f"labels outside 0..{split.num_classes - 1}"
    return None


def decode_split(images_path: Path, labels_path: Path, split: EMNISTSplit) -> tuple[np.ndarray, np.ndarray]:
    """Upright (N, 1, 28, 28) uint8 images and int64 labels 0..n-1 of two IDX files, checked against each
    other and against the split's label range (Letters' files count from 1)."""
    images = read_upright_images(images_path).numpy()
    labels = idx.read_labels(labels_path).astype("int64")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} "
            "labels; the two files are from different downloads: fetch both again"
        )
    first, last = split.first_label, split.first_label + split.num_classes - 1
    if len(labels) and (labels.min() < first or labels.max() > last):
        outside = int(labels.min()) if labels.min() < first else int(labels.max())
        raise DataError(
            f"{labels_path}: label {outside} is outside {first}..{last}; these are not EMNIST {split.name} "
            "labels (another split's files under this name?): fetch the files again"
        )
    labels -= first
    return images, labels


def read_upright_images(path: Path) -> torch.Tensor:
    """(N, 1, 28, 28) uint8 images of an IDX file, turned upright: EMNIST's files store them transposed."""
    return torch.from_numpy(idx.read_images(path).copy()).transpose(1, 2).contiguous().unsqueeze(1)
