"""The data module: splits, orientation, normalisation, batches."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emnist_lightning.data import EMNISTDataModule, EMNISTSplit, files, idx
from emnist_lightning.data.datamodule import IndexBatches, stratified_split
from emnist_lightning.errors import ConfigError, DataError
from tests.conftest import BALANCED, synthetic_datamodule, write_synthetic_emnist


def cached_in(cache_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """load_split's cache settings: a folder, and the key its entries are sealed with."""
    return {"cache_dir": cache_dir, "cache_key_file": tmp_path / "key"}


@pytest.fixture
def datamodule(synthetic_dir: Path) -> EMNISTDataModule:
    module = synthetic_datamodule(synthetic_dir, val_fraction=0.25, batch_size=32, seed=3)
    module.prepare_data()
    module.setup()
    return module


def test_split_sizes(datamodule: EMNISTDataModule) -> None:
    assert len(datamodule.val_set) == 47 * 6  # 25% of 24 per class
    assert len(datamodule.train_set) == 47 * 18
    assert len(datamodule.test_set) == 47 * 6


def test_validation_is_stratified() -> None:
    labels = torch.arange(10).repeat_interleave(torch.arange(10, 110, 10))  # 10..100 per class
    train, val = stratified_split(labels, 0.1, seed=0)
    per_class = torch.bincount(labels[val], minlength=10)
    assert per_class.tolist() == list(range(1, 11))
    assert len(train) + len(val) == len(labels)


def test_train_and_val_are_disjoint_and_seeded() -> None:
    labels = torch.randint(0, 47, (2000,), generator=torch.Generator().manual_seed(0))
    train, val = stratified_split(labels, 0.2, seed=7)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert set(train.tolist()) | set(val.tolist()) == set(range(2000))
    assert torch.equal(val, stratified_split(labels, 0.2, seed=7)[1])
    assert not torch.equal(val, stratified_split(labels, 0.2, seed=8)[1])


def test_images_are_turned_upright(tmp_path: Path, synthetic_dir: Path) -> None:
    for file in synthetic_dir.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    upright = np.zeros((47, 28, 28), np.uint8)
    upright[:, :3, :] = 255  # a bar across the top of the upright image
    idx.write_idx(tmp_path / "emnist-balanced-test-images-idx3-ubyte.gz", upright.transpose(0, 2, 1))
    idx.write_idx(tmp_path / "emnist-balanced-test-labels-idx1-ubyte.gz", np.arange(47, dtype=np.uint8))
    loaded = files.load_split(tmp_path, BALANCED, "test").images
    assert loaded.shape == (47, 1, 28, 28)
    assert (loaded[:, 0, :3, :] == 255).all() and (loaded[:, 0, 3:, :] == 0).all()


def test_normalisation_uses_training_stats(datamodule: EMNISTDataModule) -> None:
    pixels = datamodule.train_set.images.float() / 255
    assert datamodule.mean == pytest.approx(pixels.mean().item())
    assert datamodule.std == pytest.approx(pixels.std().item())
    normalised = datamodule.normalize(datamodule.train_set.images)
    assert normalised.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert normalised.std().item() == pytest.approx(1.0, abs=1e-3)


def test_batches_are_served_by_index(datamodule: EMNISTDataModule) -> None:
    loader = datamodule.train_dataloader()
    batches = list(loader)
    assert sum(len(labels) for _, labels in batches) == len(datamodule.train_set)
    images, labels = batches[0]
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    seen = torch.cat([labels for _, labels in batches])
    assert torch.equal(seen.sort().values, datamodule.train_set.labels.sort().values)


def test_shuffle_is_seeded(datamodule: EMNISTDataModule) -> None:
    first = next(iter(datamodule.train_dataloader()))[1]
    again = next(iter(datamodule.train_dataloader()))[1]
    assert torch.equal(first, again)
    assert not torch.equal(first, datamodule.train_set.labels[:32])


def test_after_transfer_normalises(datamodule: EMNISTDataModule) -> None:
    images, labels = next(iter(datamodule.val_dataloader()))
    normalised, same_labels = datamodule.on_after_batch_transfer((images, labels), 0)
    assert normalised.dtype == torch.float32
    assert torch.allclose(normalised, (images.float() / 255 - datamodule.mean) / datamodule.std)
    assert torch.equal(same_labels, labels)


def test_state_dict_carries_normalisation(datamodule: EMNISTDataModule, synthetic_dir: Path) -> None:
    other = synthetic_datamodule(synthetic_dir)
    other.load_state_dict(datamodule.state_dict())
    assert (other.mean, other.std) == (datamodule.mean, datamodule.std)


def test_balanced_classes(datamodule: EMNISTDataModule) -> None:
    assert datamodule.classes == BALANCED.classes and datamodule.num_classes == 47
    assert datamodule.classes[:3] == ("0", "1", "2") and datamodule.classes[-1] == "t"


@pytest.mark.parametrize("content", ["0 48\n1 49\n", "zero 48\n"])
def test_bad_mapping_file(fresh_synthetic_dir: Path, content: str) -> None:
    (fresh_synthetic_dir / BALANCED.mapping_file).write_text(content)
    with pytest.raises(DataError, match="mapping"):
        synthetic_datamodule(fresh_synthetic_dir).setup("test")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"device_resident": "yes"}, "device_resident"),
    ],
)
def test_bad_config_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        synthetic_datamodule("unused", **kwargs)


def test_test_stage_loads_only_the_test_split(synthetic_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []
    original = files.load_split

    def recording_load_split(data_dir: Path, split: EMNISTSplit, stage: str, *cache: Path) -> files.ImageSet:
        loaded.append(stage)
        return original(data_dir, split, stage, *cache)

    monkeypatch.setattr("emnist_lightning.data.datamodule.load_split", recording_load_split)
    module = synthetic_datamodule(synthetic_dir)
    module.setup("test")
    assert loaded == ["test"]
    assert module.train_set is None and module.mean is None
    with pytest.raises(RuntimeError, match="normalisation stats are unknown.*ckpt_path"):
        module.normalize(module.test_set.images[:1])
    module.setup("fit")
    assert loaded == ["test", "train"] and module.mean is not None


@pytest.mark.parametrize("size", [1000, 1001, 1003])
def test_ddp_ranks_train_on_disjoint_shards_that_cover_each_epoch(size: int) -> None:
    """Two DDP ranks draw one permutation: their shards never overlap (but for the padding that evens out an
    odd split), together hold every index, take the same number of steps, and change with the epoch."""
    shards = [IndexBatches(size, 64, shuffle=True, seed=3, device=None, rank=rank, world_size=2) for rank in (0, 1)]
    for sampler in shards:
        sampler.set_epoch(5)
    batches = [list(sampler) for sampler in shards]
    assert len(batches[0]) == len(batches[1]) == len(shards[0]) == len(shards[1])
    assert all(len(a) == len(b) == 32 for a, b in zip(batches[0][:-1], batches[1][:-1], strict=True))
    seen = [torch.cat(rank_batches) for rank_batches in batches]
    assert set(torch.cat(seen).tolist()) == set(range(size))
    assert len(seen[0]) + len(seen[1]) == size + size % 2
    assert len(set(seen[0].tolist()) & set(seen[1].tolist())) == size % 2
    one_process = IndexBatches(size, 64, shuffle=True, seed=3, device=None)
    one_process.set_epoch(5)
    first = next(iter(one_process))
    assert torch.equal(torch.cat([batches[0][0], batches[1][0]]).sort().values, first.sort().values), (
        "a step of both ranks is the batch one process would take"
    )
    shards[0].set_epoch(6)
    assert not torch.equal(torch.cat(list(shards[0])), seen[0])


def test_ddp_evaluation_shards_count_every_image_once() -> None:
    shards = [IndexBatches(1001, 100, shuffle=False, seed=0, device=None, rank=rank, world_size=3) for rank in range(3)]
    seen = [torch.cat(list(sampler)) for sampler in shards]
    assert sorted(torch.cat(seen).tolist()) == list(range(1001))
    assert [len(list(sampler)) for sampler in shards] == [len(sampler) for sampler in shards] == [11, 10, 10]


def test_global_batch_must_divide_among_processes(synthetic_dir: Path) -> None:
    datamodule = synthetic_datamodule(synthetic_dir, batch_size=33, device_resident=False)
    datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=2)
    with pytest.raises(ConfigError, match="data.batch_size=33 is the global batch"):
        datamodule.train_dataloader()
    datamodule.batch_size = 32
    assert datamodule.train_dataloader().sampler.world_size == 2


def test_a_decoded_split_is_read_from_the_cache_the_second_time(
    fresh_synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = files.load_split(fresh_synthetic_dir, BALANCED, "train", **cached_in(tmp_path / "cache", tmp_path))
    assert len(list((tmp_path / "cache").glob("balanced-train-*.npz"))) == 1
    monkeypatch.setattr(files.idx, "read_images", lambda path: pytest.fail("decoded again despite the cache"))
    second = files.load_split(fresh_synthetic_dir, BALANCED, "train", **cached_in(tmp_path / "cache", tmp_path))
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.images.dtype == torch.uint8 and second.labels.dtype == torch.int64


def test_a_changed_file_is_never_served_from_the_cache(fresh_synthetic_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    before = files.load_split(fresh_synthetic_dir, BALANCED, "train", **cached_in(cache_dir, tmp_path))
    write_synthetic_emnist(fresh_synthetic_dir, seed=7)  # the same names, other images
    after = files.load_split(fresh_synthetic_dir, BALANCED, "train", **cached_in(cache_dir, tmp_path))
    assert not torch.equal(before.images, after.images)
    assert torch.equal(after.images, files.load_split(fresh_synthetic_dir, BALANCED, "train").images), (
        "not the new file"
    )
    assert len(list(cache_dir.glob("balanced-train-*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_cache_is_rebuilt_with_a_warning(
    fresh_synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    cache_dir = tmp_path / "cache"
    expected = files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    (entry,) = cache_dir.glob("balanced-test-*.npz")
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # one pixel inside the stored images: the zip's CRC-32 no longer matches
        data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        reloaded = files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    assert torch.equal(reloaded.images, expected.images)
    assert f"the data cache {entry}" in caplog.text and "decoding the IDX files again" in caplog.text
    caplog.clear()
    files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    assert "data cache" not in caplog.text, "the rebuilt entry is sound"


def test_an_unwritable_cache_is_skipped_with_a_warning(
    synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING):
        split = files.load_split(synthetic_dir, BALANCED, "test", **cached_in(blocked / "cache", tmp_path))
    assert len(split) == 47 * 6 and "cannot write the data cache" in caplog.text


def test_an_entry_of_another_decoder_is_not_reused(
    fresh_synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder's code is part of every entry's name: after an edit, the old entry is never read."""
    cache_dir = tmp_path / "cache"
    files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    monkeypatch.setattr(files.cache, "decoder_version", lambda modules: "edited")
    decoded = []
    original = files.decode_split
    monkeypatch.setattr(files, "decode_split", lambda *args: decoded.append(1) or original(*args))
    files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    assert decoded == [1] and len(list(cache_dir.glob("balanced-test-*.npz"))) == 2


@pytest.mark.parametrize(
    ("images", "labels", "problem"),
    [
        (np.zeros((3, 1, 28, 28), np.float32), np.zeros(3, np.int64), "not uint8"),
        (np.zeros((3, 1, 28, 28), np.uint8), np.full(3, 99, np.int64), "labels outside 0..46"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.int64), "not uint8 .N, 1, 28, 28."),
    ],
)
def test_a_planted_cache_entry_is_refused(
    fresh_synthetic_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    images: np.ndarray,
    labels: np.ndarray,
    problem: str,
) -> None:
    """A shared cache folder can be written by others: an entry with the right name but the wrong dtype,
    shape or labels is decoded afresh, with a warning."""
    cache_dir = tmp_path / "cache"
    expected = files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    (entry,) = cache_dir.glob("balanced-test-*.npz")
    np.savez(entry, images=images, labels=labels)
    with caplog.at_level(logging.WARNING):
        reloaded = files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    assert torch.equal(reloaded.labels, expected.labels)
    assert re.search(problem, caplog.text) and "not what the decoder makes" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root may search any folder")
def test_a_cache_folder_that_cannot_be_searched_is_a_warning(
    synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o000)
    try:
        with caplog.at_level(logging.WARNING):
            split = files.load_split(synthetic_dir, BALANCED, "test", **cached_in(closed / "cache", tmp_path))
    finally:
        closed.chmod(0o700)
    assert len(split) == 47 * 6 and "data cache" in caplog.text


def test_partial_files_of_dead_writers_are_removed(synthetic_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    orphan, fresh = cache_dir / ".old.npz.host.1.ab.partial", cache_dir / ".new.npz.host.2.cd.partial"
    for path in (orphan, fresh):
        path.write_bytes(b"half")
    os.utime(orphan, (time.time() - 2 * 24 * 3600,) * 2)
    files.load_split(synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    assert not orphan.exists() and fresh.exists()  # another process may still be writing the fresh one


def test_an_entry_planted_with_the_right_shapes_and_labels_in_range_is_refused(
    fresh_synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Labels shifted by one pass every structural check; without the key no one can seal them."""
    cache_dir, key_file = tmp_path / "cache", tmp_path / "key"  # as cached_in places them
    expected = files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    (entry,) = cache_dir.glob("balanced-test-*.npz")
    with np.load(entry) as stored:
        images, labels, sealed = stored["images"], stored["labels"], stored["seal"]
    np.savez(entry, images=images, labels=(labels + 1) % 47, seal=sealed)  # the old seal, copied over
    with caplog.at_level(logging.WARNING):
        reloaded = files.load_split(fresh_synthetic_dir, BALANCED, "test", **cached_in(cache_dir, tmp_path))
    assert torch.equal(reloaded.labels, expected.labels)
    assert "its seal does not match" in caplog.text
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
