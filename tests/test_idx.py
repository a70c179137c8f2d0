"""IDX parsing and validation of the official files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from emnist_lightning.data import files, idx
from emnist_lightning.errors import DataError
from tests.conftest import BALANCED, write_gzip_bomb

IMAGES = "emnist-balanced-train-images-idx3-ubyte"
LABELS = "emnist-balanced-train-labels-idx1-ubyte"


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip_gz_and_raw(tmp_path: Path, gz: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = tmp_path / (IMAGES + (".gz" if gz else ""))
    idx.write_idx(path, images)
    np.testing.assert_array_equal(idx.read_images(path), images)


def test_labels_round_trip(tmp_path: Path) -> None:
    labels = np.arange(47, dtype=np.uint8)
    idx.write_idx(tmp_path / LABELS, labels)
    np.testing.assert_array_equal(idx.read_labels(tmp_path / LABELS), labels)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / IMAGES
    idx.write_idx(path, np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated.*holds 3,036"):
        idx.read_images(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / IMAGES
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="header is cut short"):
        idx.read_images(path)


def test_wrong_magic_labels_given_as_images(tmp_path: Path) -> None:
    path = tmp_path / IMAGES
    idx.write_idx(path, np.zeros(10, np.uint8))
    with pytest.raises(DataError, match="wrong magic number 2049 \\(expected 2051\\)"):
        idx.read_images(path)


def test_wrong_image_size(tmp_path: Path) -> None:
    path = tmp_path / IMAGES
    idx.write_idx(path, np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataError, match="expected 28x28"):
        idx.read_images(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / LABELS
    idx.write_idx(path, np.zeros(10, np.uint8))
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(DataError, match="4 unexpected bytes"):
        idx.read_labels(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / (LABELS + ".gz")
    idx.write_idx(path, np.zeros(1000, np.uint8))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="not a valid gzip file.*download it again"):
        idx.read_labels(path)


def test_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / (LABELS + ".gz")
    path.write_text("<html>proxy error</html>")
    with pytest.raises(DataError, match="not a valid gzip file"):
        idx.read_labels(path)


def test_count_mismatch(fresh_synthetic_dir: Path) -> None:
    idx.write_idx(fresh_synthetic_dir / f"{LABELS}.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="images but .* holds 3 labels"):
        files.load_split(fresh_synthetic_dir, BALANCED, "train")


def test_label_out_of_range(fresh_synthetic_dir: Path) -> None:
    labels = idx.read_labels(fresh_synthetic_dir / f"{LABELS}.gz").copy()
    labels[0] = 61  # a ByClass label
    idx.write_idx(fresh_synthetic_dir / f"{LABELS}.gz", labels)
    with pytest.raises(DataError, match="label 61 is outside 0..46"):
        files.load_split(fresh_synthetic_dir, BALANCED, "train")


def test_unofficial_counts_warn_once(synthetic_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    files.load_split(synthetic_dir, BALANCED, "test")
    warnings = [r for r in caplog.records if "not the official" in r.getMessage()]
    assert len(warnings) == 1


def test_missing_files_message_names_everything(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        files.ensure_files(tmp_path, BALANCED, download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    for name in BALANCED.required_files:
        assert name in message
    assert "data.data_dir" in message and "data.download=true" in message


def test_failed_download_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(archive: object, folder: Path) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(files, "fetch_archive", offline)
    with pytest.raises(DataError, match="the download failed \\(OSError: Network is unreachable\\)"):
        files.ensure_files(tmp_path, BALANCED, download=True)


def test_partial_folder_lists_only_missing(fresh_synthetic_dir: Path) -> None:
    (fresh_synthetic_dir / "emnist-balanced-test-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as caught:
        files.ensure_files(fresh_synthetic_dir, BALANCED, download=False)
    assert "missing emnist-balanced-test-labels-idx1-ubyte[.gz];" in str(caught.value)


def test_torchvision_layout_is_found(tmp_path: Path, synthetic_dir: Path) -> None:
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    for file in synthetic_dir.iterdir():
        with gzip.open(file) if file.suffix == ".gz" else open(file, "rb") as src:
            (raw / file.name.removesuffix(".gz")).write_bytes(src.read())
    assert files.missing_files(tmp_path, BALANCED) == []
    assert len(files.load_split(tmp_path, BALANCED, "test")) == 47 * 6


def test_a_gzip_bomb_is_refused_before_it_is_decompressed(tmp_path: Path) -> None:
    bomb = write_gzip_bomb(tmp_path / "bomb-idx3-ubyte.gz", declared_images=10**8)
    with pytest.raises(DataError, match=r"header declares 78,400,000,016 bytes .* not an EMNIST file"):
        idx.read_images(bomb)


def test_decompression_stops_past_the_declared_size(tmp_path: Path) -> None:
    """One image declared, 64 MB of zeros behind it: reading stops one byte past the image and refuses."""
    bomb = write_gzip_bomb(tmp_path / "bomb-idx3-ubyte.gz", declared_images=1, zeros=64 << 20)
    assert len(idx.read_bytes(bomb)) == 16 + 28 * 28 + 1
    with pytest.raises(DataError, match="unexpected bytes after the data"):
        idx.read_images(bomb)


@pytest.mark.parametrize("gz", [True, False])
def test_a_file_cut_short_is_told_from_its_size_alone(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / ("images-idx3-ubyte.gz" if gz else "images-idx3-ubyte")
    idx.write_idx(path, np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    assert idx.incompleteness(path) is None
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 100])
    assert idx.incompleteness(path) is not None
