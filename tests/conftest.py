"""Shared fixtures: small synthetic EMNIST splits (Balanced unless asked) in the official file format."""

from __future__ import annotations

import copy
import functools
import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from emnist_lightning.data import SPLITS, EMNISTDataModule
from emnist_lightning.data.idx import write_idx
from emnist_lightning.models import EMNISTClassifier
from emnist_lightning.overrides import parse_overrides
from emnist_lightning.runs.config import config_dir
from emnist_lightning.runs.record import RunRecord
from emnist_lightning.runs.resume import planned_jobs

REPO_ROOT = Path(__file__).resolve().parents[1]
BALANCED = SPLITS["balanced"]
# Runs started by the tests cache decoded data in a folder of their own, not in the user's ~/.cache.
OWN_CACHE_DIR = None if "EMNIST_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="emnist-lightning-test-cache-")
if OWN_CACHE_DIR:
    os.environ["EMNIST_CACHE_DIR"] = OWN_CACHE_DIR
    os.environ.setdefault("EMNIST_CACHE_KEY_FILE", str(Path(OWN_CACHE_DIR) / "key" / "cache.key"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker and the runs it starts compute on its share of the cores: with a worker
    per core, each worker's runs on every core would oversubscribe the CPU (OMP_NUM_THREADS is what a
    subprocess's torch starts with)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if OWN_CACHE_DIR:
        shutil.rmtree(OWN_CACHE_DIR, ignore_errors=True)


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Upright 28x28 images: one fixed random blob pattern per class plus noise, so they are learnable."""
    templates = np.random.default_rng(1234).random((int(labels.max()) + 1, 28, 28)) > 0.8
    images = templates[labels] * 200 + rng.integers(0, 55, (len(labels), 28, 28))
    return images.astype(np.uint8)


def write_synthetic_emnist(
    folder: Path,
    train_per_class: int = 24,
    test_per_class: int = 6,
    gz: bool = True,
    seed: int = 0,
    split: str = "balanced",
) -> Path:
    """Write a split's four official files (images stored transposed, like EMNIST, labels from the split's
    first label: 1 for Letters) and its mapping file, as the official one is written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, emnist = np.random.default_rng(seed), SPLITS[split]
    labels_of_files = np.arange(emnist.num_classes) + emnist.first_label
    for stage, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(labels_of_files, per_class)).astype(np.uint8)
        upright = synthetic_images(labels, rng)
        images_name, labels_name = emnist.file_names(stage)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{images_name}{suffix}", upright.transpose(0, 2, 1))
        write_idx(folder / f"{labels_name}{suffix}", labels)
    rows = (
        f"{label} {' '.join(str(ord(c)) for c in name.split('/'))}"
        for label, name in zip(labels_of_files, emnist.classes, strict=True)
    )
    (folder / emnist.mapping_file).write_text("".join(f"{row}\r\n" for row in rows))
    return folder


def write_gzip_bomb(path: Path, declared_images: int, zeros: int = 0) -> Path:
    """A gzipped IDX image file whose header declares `declared_images` 28x28 images, followed by `zeros`
    bytes of zeros: a few kilobytes on disk either way."""
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (declared_images, 28, 28))
    with gzip.open(path, "wb") as handle:
        handle.write(header)
        for _ in range(zeros // (1 << 20)):
            handle.write(bytes(1 << 20))
    return path


def synthetic_datamodule(data_dir: str | Path, **settings: Any) -> EMNISTDataModule:
    """The data module on local files: conf/data/emnist.yaml's settings, with Balanced, no download, no cache
    and seed 0 unless `settings` say otherwise."""
    defaults = configured_settings("data") | {
        "split": "balanced",
        "download": False,
        "seed": 0,
        "cache_dir": None,
        "cache_key_file": None,
        "archive_url": None,
    }
    return EMNISTDataModule(**(defaults | {"data_dir": data_dir} | settings))


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_emnist(tmp_path_factory.mktemp("emnist"))


def train_synthetic_checkpoint(data_dir: Path, folder: Path, split: str = "balanced", seed: int = 0) -> Path:
    """A small CNN trained for a few steps on synthetic `split` data in `data_dir`, saved as train.py
    saves it (with the data module's normalisation)."""
    L.seed_everything(seed)
    classes = SPLITS[split].classes
    arguments = model_arguments("cnn", channels=[8, 16], split=split, classes=classes)
    model = EMNISTClassifier(**arguments, optimizer=torch.optim.Adam)
    trainer = quick_trainer(folder)
    trainer.fit(model, datamodule=synthetic_datamodule(data_dir, split=split, batch_size=32))
    trainer.save_checkpoint(folder / "model.ckpt")
    return folder / "model.ckpt"


@pytest.fixture(scope="session")
def synthetic_checkpoint(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Balanced model trained briefly on the synthetic data."""
    return train_synthetic_checkpoint(synthetic_dir, tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Digits model trained briefly on synthetic Digits data."""
    data_dir = write_synthetic_emnist(tmp_path_factory.mktemp("digits"), split="digits")
    return train_synthetic_checkpoint(data_dir, tmp_path_factory.mktemp("digits-checkpoint"), "digits")


@pytest.fixture(scope="session")
def letters_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Letters model trained briefly on synthetic Letters data (labels 1..26 in the files)."""
    data_dir = write_synthetic_emnist(tmp_path_factory.mktemp("letters"), split="letters")
    return train_synthetic_checkpoint(data_dir, tmp_path_factory.mktemp("letters-checkpoint"), "letters")


@pytest.fixture
def fresh_synthetic_dir(tmp_path: Path) -> Path:
    """A private copy that a test may corrupt."""
    return write_synthetic_emnist(tmp_path / "emnist")


@functools.cache
def model_preset(preset: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={preset}"])
    arguments = OmegaConf.to_container(cfg.model, resolve=True)
    arguments.pop("_target_")
    return arguments


def configured_settings(key: str) -> dict[str, Any]:
    """The keys conf/train.yaml gives the object at `key` (e.g. callbacks.test_diagnostics), without its
    _target_ and output_dir."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train")
    settings = OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=False)
    return {name: value for name, value in settings.items() if name not in ("_target_", "output_dir")}


def model_arguments(preset: str = "mlp", **overrides: Any) -> dict[str, Any]:
    """EMNISTClassifier's arguments from conf/model/<preset>.yaml for Balanced, with `overrides`."""
    return copy.deepcopy(model_preset(preset)) | {"split": BALANCED.name, "classes": BALANCED.classes} | overrides


def network_arguments(preset: str = "mlp", **overrides: Any) -> dict[str, Any]:
    """The network's arguments from conf/model/<preset>.yaml, with `overrides`."""
    arguments = model_arguments(preset, **overrides)
    for key in ("network", "compile", "split", "classes"):
        arguments.pop(key)
    return arguments


def quick_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    """A quiet CPU trainer for a few batches; kwargs override any option."""
    options = {
        "max_epochs": 1,
        "limit_train_batches": 3,
        "limit_val_batches": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": tmp_path,
        "accelerator": "cpu",
    }
    return L.Trainer(**(options | kwargs))


def run_entry_point(
    script: str, *overrides: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a script (train.py, evaluate.py, ...) or a module (emnist_lightning.cli.export) in a subprocess as a user
    would, with no EMNIST_DATA_DIR from this shell, and with `env` added to the environment."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    env.pop("EMNIST_DATA_DIR", None)
    command = [str(REPO_ROOT / script)] if script.endswith(".py") else ["-m", script]
    return subprocess.run(
        [sys.executable, *command, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def fake_job(folder: Path, overrides: list[str], val_acc: float, status: str = "completed") -> None:
    """What a sweep job leaves for the report: its overrides and a metrics.json."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {"val_acc": val_acc, "val_macro_acc": val_acc - 0.02, "test_acc": val_acc, "test_macro_acc": val_acc}
    RunRecord(status, overrides=overrides, history={"val/acc": [val_acc - 0.1, val_acc]}, **metrics).write(folder)


def script_module(name: str) -> ModuleType:
    """One of scripts/*.py, imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sweep_jobs(cfg: Any) -> list[dict[str, str]]:
    """A composed sweep's jobs as Hydra's basic sweeper expands them, first job first, each as {key: value}."""
    return [
        {override.key_or_group: str(override.value()) for override in parse_overrides(overrides)}
        for overrides in planned_jobs(cfg)
    ]
