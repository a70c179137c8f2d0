"""The training module: checkpoints, penalties, optimizers and schedules."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.errors import CheckpointError
from emnist_lightning.module import CNNClassifier, MLPClassifier, accuracies, load_classifier
from tests.conftest import quick_trainer

BATCH = torch.randn(4, 1, 28, 28)


@pytest.fixture
def datamodule(synthetic_dir: Path) -> EMNISTDataModule:
    return EMNISTDataModule(synthetic_dir, download=False, batch_size=16)


@pytest.mark.parametrize(
    "make_model",
    [
        lambda opt: MLPClassifier(hidden_dims=[32, 32, 32], batch_norm=True, dropout=0.1, optimizer=opt),
        lambda opt: CNNClassifier(channels=[4, 8], head_dims=[16], activation="gelu", optimizer=opt),
    ],
    ids=["mlp", "cnn"],
)
def test_checkpoint_round_trip(tmp_path: Path, datamodule: EMNISTDataModule, make_model) -> None:
    model = make_model(functools.partial(torch.optim.Adam, lr=1e-3))
    trainer = quick_trainer(tmp_path)
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    model.eval()
    for restored in (load_classifier(path), type(model).load_from_checkpoint(path)):
        assert type(restored) is type(model)
        restored.eval()
        assert torch.equal(restored(BATCH), model(BATCH))


def test_checkpoint_keeps_normalisation(tmp_path: Path, datamodule: EMNISTDataModule) -> None:
    trainer = quick_trainer(tmp_path)
    trainer.fit(MLPClassifier(hidden_dims=[8, 8, 8], optimizer=torch.optim.SGD), datamodule=datamodule)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    saved = torch.load(tmp_path / "m.ckpt", weights_only=False)["EMNISTDataModule"]
    assert saved == {"mean": datamodule.mean, "std": datamodule.std}


@pytest.mark.parametrize("seed", range(3))
def test_accuracies_from_confusion_match_torchmetrics(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    # 10 classes in the matrix; labels use 0-6 and predictions 0-7, so class 7 is predicted but
    # never a label (it counts in the macro mean) and classes 8-9 never occur (they do not)
    labels = torch.randint(0, 7, (200,), generator=generator)
    logits = torch.randn(200, 10, generator=generator)
    logits[:, 8:] = -10
    logits[labels == 0, 0] += 3  # some classes right more often than others
    found = accuracies(multiclass_confusion_matrix(logits, labels, 10))
    assert torch.allclose(found["acc"], multiclass_accuracy(logits, labels, 10, average="micro"))
    assert torch.allclose(found["macro_acc"], multiclass_accuracy(logits, labels, 10, average="macro"))


def test_training_logs_epoch_accuracies(tmp_path: Path, datamodule: EMNISTDataModule) -> None:
    trainer = quick_trainer(tmp_path)
    trainer.fit(MLPClassifier(hidden_dims=[8, 8, 8], optimizer=torch.optim.SGD), datamodule=datamodule)
    logged = trainer.callback_metrics
    assert {"train/loss", "train/acc", "train/macro_acc"} <= logged.keys()
    assert 0 <= logged["train/macro_acc"] <= 1 and 0 <= logged["train/acc"] <= 1


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nope.ckpt")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_classifier(path)


def test_foreign_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not written by emnist_lightning"):
        load_classifier(path)


def test_checkpoint_that_does_not_fit(tmp_path: Path) -> None:
    model = MLPClassifier(hidden_dims=[8, 8, 8])
    path = tmp_path / "edited.ckpt"
    trainer = quick_trainer(tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["hyper_parameters"]["hidden_dims"] = [16, 8, 8]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="does not fit MLPClassifier"):
        load_classifier(path)
