"""The fast data paths serve exactly what the naive pipeline would; the benchmark runs."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from benchmarks.throughput import PILImages, limit_batches, naive_loader, same_precision_as_ours
from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.data.datamodule import InMemoryDataset
from emnist_lightning.runs.config import compose as compose_config
from emnist_lightning.runs.host import resolved_precision
from tests.conftest import run_entry_point, synthetic_datamodule

INDICES = [5, 0, 17, 300, 42, 99, 1, 2]


@pytest.fixture
def datamodule(synthetic_dir: Path) -> EMNISTDataModule:
    module = synthetic_datamodule(synthetic_dir, batch_size=8, seed=1)
    module.setup("fit")
    return module


def fast_batch(datamodule: EMNISTDataModule, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    raw = InMemoryDataset(datamodule.train_set)[indices]
    return datamodule.on_after_batch_transfer(raw, dataloader_idx=0)


def test_fast_path_equals_naive_pipeline(datamodule: EMNISTDataModule) -> None:
    images, labels = fast_batch(datamodule, INDICES)
    train = datamodule.train_set
    naive = PILImages(train.images, train.labels, datamodule.mean, datamodule.std)
    naive_images = torch.stack([naive[i][0] for i in INDICES])
    naive_labels = torch.tensor([naive[i][1] for i in INDICES])
    assert naive_images.shape == images.shape == (8, 1, 28, 28)
    assert torch.equal(images, naive_images), (images - naive_images).abs().max()
    assert torch.equal(labels, naive_labels)


def test_same_seed_same_batches(datamodule: EMNISTDataModule, synthetic_dir: Path) -> None:
    again = synthetic_datamodule(synthetic_dir, batch_size=8, seed=1)
    again.setup("fit")
    for (a_images, a_labels), (b_images, b_labels) in zip(
        datamodule.train_dataloader(), again.train_dataloader(), strict=True
    ):
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)


def test_naive_loader_serves_the_same_examples(datamodule: EMNISTDataModule) -> None:
    loader = naive_loader(datamodule, batch_size=64, workers=0)
    labels = torch.cat([labels for _, labels in loader])
    assert torch.equal(labels.sort().values, datamodule.train_set.labels.sort().values)


def test_device_resident_batches_equal_host_batches(synthetic_dir: Path) -> None:
    host = synthetic_datamodule(synthetic_dir, batch_size=8, seed=1, device_resident=False)
    resident = synthetic_datamodule(synthetic_dir, batch_size=8, seed=1, device_resident=True)
    resident.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    host.setup("fit")
    resident.setup("fit")
    assert resident.resident_device() == torch.device("cpu")
    assert host.resident_device() is None
    pairs = zip(host.val_dataloader(), resident.val_dataloader(), strict=True)
    for (h_images, h_labels), (r_images, r_labels) in pairs:
        assert torch.equal(h_images, r_images) and torch.equal(h_labels, r_labels)
    assert torch.equal(host.normalize(h_images), resident.normalize(r_images))


def test_auto_residency_stays_on_the_host_for_a_cpu(synthetic_dir: Path) -> None:
    module = synthetic_datamodule(synthetic_dir, device_resident="auto")
    module.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert module.resident_device() is None


@pytest.mark.slow
def test_benchmark_smoke(synthetic_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    smoke = ["--smoke", "--data-dir", str(synthetic_dir), "--json", str(output)]
    # without the test pictures (6 s of each one-epoch run here), which tests/test_pictures.py covers
    result = run_entry_point("benchmarks/throughput.py", *smoke, "callbacks=no_pictures", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    for family in ("mlp", "cnn"):
        assert set(report["throughput"][family]) == {"limit", "naive", "ours", "augmented"}
        assert report["throughput"][family]["ours"]["images_per_s"] > 0
        assert report["ratios"][family]["ours/limit"] > 0
        assert report["ratios"][family]["augmented/ours"] > 0
        assert report["epochs"][family]["train_s"] > 0
    assert "ours / limit" in result.stdout and "augment=affine: time per step" in result.stdout
    # the bare loop runs in the precision ours resolves to on this CPU, and the report says which
    assert report["precision"] == str(resolved_precision("auto", "cpu"))
    assert f"{report['precision']} in every variant" in result.stdout


def test_the_bare_loop_computes_in_the_precision_ours_resolves_to(tmp_path: Path) -> None:
    for precision, dtype in (("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)):
        cfg = compose_config("train", [f"trainer.precision={precision}"], tmp_path)
        with same_precision_as_ours(cfg, torch.device("cpu")):
            product = torch.ones(2, 2) @ torch.ones(2, 2)
        assert product.dtype == dtype


def test_limit_batches_are_full_across_epochs() -> None:
    batches = limit_batches(size=100, batch_size=32, steps=10, device=torch.device("cpu"))
    assert [len(batch) for batch in batches] == [32] * 10
    first_epoch = torch.cat(batches)[:100]
    assert sorted(first_epoch.tolist()) == list(range(100))  # each epoch is a permutation


def test_whole_run_benchmark_smoke(synthetic_dir: Path, tmp_path: Path) -> None:
    """benchmarks/whole_run.py on the synthetic files: train.py and the bare script both run, and the
    breakdown of train.py's time adds up to the process's wall time."""
    output = tmp_path / "whole.json"
    result = run_entry_point(
        "benchmarks/whole_run.py",
        "--data-dir",
        str(synthetic_dir),
        "--repeats",
        "1",
        "--no-sweep",
        "--json",
        str(output),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    single = report["runs"]["single"]
    assert all(single[f"{name} s"] > 0 for name in ("ours", "bare", "bare fused"))
    assert single["ours / bare"] == single["ours s"] / single["bare s"]
    assert single["ours / bare fused"] == single["ours s"] / single["bare fused s"]
    run = report["last_single_run"]
    accounted = run["start-up"] + sum(run["laps"].values()) + run["exit"]
    assert accounted == pytest.approx(single["ours s"], abs=0.5)
    assert {"confusion_matrix.png", "dataset_samples.png"} <= set(run["pictures"])
    assert "where the last single run's" in result.stdout


@pytest.mark.slow
def test_speedrun_benchmark_smoke(synthetic_dir: Path, tmp_path: Path) -> None:
    """benchmarks/speedrun.py on the synthetic files: both sides train for each seed and the summary is the
    seeds' own figures."""
    output = tmp_path / "speedrun.json"
    tiny = ["trainer.max_epochs=1", "model.channels=[8,8,16]", "model.head_dims=[32]", "data.batch_size=64"]
    result = run_entry_point(
        "benchmarks/speedrun.py",
        *("--data-dir", str(synthetic_dir), "--seeds", "1", "2", "--target", "0.0", "--json", str(output)),
        *("--recipe", "experiment=cnn_speedrun", *tiny, "--reference", "model=cnn", *tiny),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    for side in ("recipe", "reference"):
        assert report[side]["reaches_target"] and 0 < report[side]["test_acc"]["mean"] <= 1
        low, high = report[side]["fit_seconds"]["interval"]
        assert low <= report[side]["fit_seconds"]["mean"] <= high
    assert report["fit_ratio"] > 0
    assert "time to 0.0% test accuracy" in result.stdout and "fit time recipe / reference" in result.stdout


def test_the_gpu_benchmark_reads_time_to_accuracy_from_the_epochs() -> None:
    from benchmarks.gpu import time_to_levels

    record = {
        "history": {"val/acc": [0.85, 0.885, 0.91]},
        "seconds": {"train_epoch": [10, 10, 10], "val_epoch": [1, 1, 1]},
    }
    assert time_to_levels(record) == {0.88: 22.0, 0.90: 33.0}
    record["history"]["val/acc"] = [0.5, 0.6, 0.7]
    assert time_to_levels(record) == {0.88: None, 0.90: None}
