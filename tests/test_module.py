"""The training module: one class for every network, checkpoints (also of the older format), metrics."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.errors import CheckpointError
from emnist_lightning.models import EMNISTClassifier, load_classifier
from emnist_lightning.models.metrics import accuracies
from tests.conftest import model_arguments, quick_trainer, synthetic_datamodule

BATCH = torch.randn(4, 1, 28, 28)
# Checkpoints written by the code before the network registry (MLPClassifier / CNNClassifier), each
# trained for one epoch on the synthetic data of conftest, with the test accuracy its run recorded.


@pytest.fixture
def datamodule(synthetic_dir: Path) -> EMNISTDataModule:
    return synthetic_datamodule(synthetic_dir, batch_size=16)


@pytest.mark.parametrize(
    "arguments",
    [
        model_arguments("mlp", hidden_dims=[32, 32, 32], batch_norm=True, dropout=0.1),
        model_arguments("cnn", channels=[4, 8], head_dims=[16], activation="gelu"),
    ],
    ids=["mlp", "cnn"],
)
def test_checkpoint_round_trip(tmp_path: Path, datamodule: EMNISTDataModule, arguments: dict) -> None:
    model = EMNISTClassifier(**arguments, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    trainer = quick_trainer(tmp_path)
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    model.eval()
    for restored in (load_classifier(path), EMNISTClassifier.load_from_checkpoint(path)):
        assert type(restored.network) is type(model.network)
        assert restored.hparams == model.hparams
        restored.eval()
        assert torch.equal(restored(BATCH), model(BATCH))


def test_checkpoint_keeps_normalisation(tmp_path: Path, datamodule: EMNISTDataModule) -> None:
    trainer = quick_trainer(tmp_path)
    trainer.fit(EMNISTClassifier(**model_arguments(hidden_dims=[8, 8, 8]), optimizer=torch.optim.SGD), datamodule)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    saved = torch.load(tmp_path / "m.ckpt", weights_only=True)["EMNISTDataModule"]
    assert (saved["mean"], saved["std"]) == (datamodule.mean, datamodule.std)
    assert (saved["epoch"], saved["batches_done"]) == (1, 0)  # after fitting one epoch: epoch 1 from its start


def test_a_checkpoint_from_before_0_1_0_is_refused_in_one_line(tmp_path: Path) -> None:
    """The format of 0.1.0 names its network, split and classes; an older one (no network) is refused."""
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"hidden_dims": [8, 8, 8]}, "emnist_lightning_class": "x"}, path)
    with pytest.raises(CheckpointError, match="was not written by emnist_lightning's train.py"):
        load_classifier(path)


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
    trainer.fit(EMNISTClassifier(**model_arguments(hidden_dims=[8, 8, 8]), optimizer=torch.optim.SGD), datamodule)
    logged = trainer.callback_metrics
    assert {"train/loss", "train/acc", "train/macro_acc"} <= logged.keys()
    assert 0 <= logged["train/macro_acc"] <= 1 and 0 <= logged["train/acc"] <= 1


def test_test_pass_reports_calibration_error(tmp_path: Path, datamodule: EMNISTDataModule) -> None:
    model = EMNISTClassifier(**model_arguments(hidden_dims=[8, 8, 8]), optimizer=torch.optim.SGD)
    trainer = quick_trainer(tmp_path)
    trainer.fit(model, datamodule)
    (results,) = trainer.test(model, datamodule, verbose=False)
    assert {"test/acc", "test/macro_acc", "test/loss", "test/ece"} <= results.keys()
    assert 0.0 <= results["test/ece"] <= 1.0


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nope.ckpt")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_classifier(path)


@pytest.mark.parametrize(
    "content",
    [{"state_dict": {}}, {"state_dict": {}, "emnist_lightning_class": "this.Zen"}],
    ids=["no-hyperparameters", "unknown-class"],
)
def test_foreign_checkpoint(tmp_path: Path, content: dict) -> None:
    path = tmp_path / "foreign.ckpt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="not written by emnist_lightning"):
        load_classifier(path)


def test_checkpoint_that_does_not_fit(tmp_path: Path) -> None:
    model = EMNISTClassifier(**model_arguments(hidden_dims=[8, 8, 8]))
    path = tmp_path / "edited.ckpt"
    trainer = quick_trainer(tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["hyper_parameters"]["hidden_dims"] = [16, 8, 8]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="does not fit an EMNISTClassifier: .*size mismatch"):
        load_classifier(path)
