"""Label smoothing, weight averaging and test-time augmentation do what they say inside a real fit."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.errors import ConfigError
from emnist_lightning.models import EMNISTClassifier, load_classifier
from emnist_lightning.models.averaging import ExponentialMovingAverage
from emnist_lightning.models.checkpoints import read_checkpoint
from emnist_lightning.models.losses import CrossEntropy, balanced_class_weights
from emnist_lightning.runs.config import compose
from emnist_lightning.training.build import read_test_time_shift
from tests.conftest import BALANCED, model_arguments, quick_trainer, synthetic_datamodule


def classifier(label_smoothing: float = 0.0, class_balanced: bool = False, **overrides) -> EMNISTClassifier:
    return EMNISTClassifier(
        **model_arguments("mlp", hidden_dims=[64, 64, 64]) | overrides,
        loss=CrossEntropy(label_smoothing, class_balanced),
        optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
    )


@pytest.fixture
def datamodule(synthetic_dir: Path) -> EMNISTDataModule:
    return synthetic_datamodule(synthetic_dir, batch_size=32)


class LossCheck(L.Callback):
    """Compares the loss each step trains on with F.cross_entropy(weight=the module's class weights,
    label_smoothing=...) on the same batch."""

    def __init__(self, smoothing: float) -> None:
        self.smoothing = smoothing
        self.pairs: list[tuple[float, float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch = batch

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        images, labels = self.batch
        logits = pl_module(images)
        expected = F.cross_entropy(logits, labels, weight=pl_module.loss.class_weights, label_smoothing=self.smoothing)
        self.pairs.append((loss.item(), expected.item(), F.cross_entropy(logits, labels).item()))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_training_loss_is_cross_entropy_with_label_smoothing(
    tmp_path: Path, datamodule: EMNISTDataModule, smoothing: float
) -> None:
    L.seed_everything(0)  # the gap checked below depends on the initial weights: fix them
    check = LossCheck(smoothing)
    quick_trainer(tmp_path, callbacks=[check]).fit(classifier(label_smoothing=smoothing), datamodule=datamodule)
    assert len(check.pairs) == 3
    # Near initialisation every class is about equally likely, so smoothing moves the loss only in the
    # fifth significant digit: the tolerances are well below that difference.
    for trained, expected, plain in check.pairs:
        assert trained == pytest.approx(expected, rel=1e-6, abs=1e-6)
        assert (abs(trained - plain) > 1e-5) == (smoothing > 0)


def test_label_smoothing_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"loss.label_smoothing=1.0 must be in \[0, 1\)"):
        CrossEntropy(label_smoothing=1.0, class_balanced=False)


def test_balanced_class_weights_undo_class_frequencies() -> None:
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    weights = balanced_class_weights(labels, 3)
    assert torch.allclose(weights, torch.tensor([6 / 9, 6 / 3, 6 / 6]))
    counts = torch.bincount(labels)
    assert torch.allclose(weights * counts, torch.full((3,), 2.0))  # every class weighs the same in all
    assert torch.equal(balanced_class_weights(torch.arange(3).repeat(4), 3), torch.ones(3))
    with pytest.raises(ConfigError, match=r"needs every class in the training split; \[3\] have none"):
        balanced_class_weights(labels, 4)


def test_class_balanced_loss_weighs_rare_classes_up(tmp_path: Path, datamodule: EMNISTDataModule) -> None:
    datamodule.setup("fit")
    labels = datamodule.train_set.labels
    keep = torch.ones(len(labels), dtype=torch.bool)
    for label in range(0, BALANCED.num_classes, 2):  # even classes become half as common as odd ones
        members = (labels == label).nonzero().flatten()
        keep[members[: len(members) // 2]] = False
    datamodule.train_set = datamodule.train_set.subset(keep.nonzero().flatten())
    L.seed_everything(0)
    check, model = LossCheck(smoothing=0.0), classifier(class_balanced=True)
    quick_trainer(tmp_path, callbacks=[check]).fit(model, datamodule=datamodule)
    assert torch.allclose(model.loss.class_weights[0::2], 2 * model.loss.class_weights[1])
    assert torch.allclose(model.loss.class_weights[1::2], model.loss.class_weights[1])
    for trained, expected, _ in check.pairs:
        assert trained == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert all(abs(trained - plain) > 1e-4 for trained, _, plain in check.pairs)


def test_averaged_weights_are_validated_saved_and_tested(tmp_path: Path, datamodule: EMNISTDataModule) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="last", save_top_k=1)
    averaging = ExponentialMovingAverage(decay=0.9, update_starting_at_step=0)
    model = classifier()
    trainer = quick_trainer(
        tmp_path, max_epochs=2, limit_train_batches=None, enable_checkpointing=True, callbacks=[averaging, checkpoints]
    )
    trainer.fit(model, datamodule=datamodule)
    checkpoint = read_checkpoint(checkpoints.best_model_path)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(averaged[name], raw[name]) for name in averaged), "the average equals the weights"
    # after fitting the module holds the average, as does the checkpoint
    assert all(torch.equal(value, averaged[name]) for name, value in model.state_dict().items())

    tested = trainer.test(model, datamodule=datamodule, ckpt_path=checkpoints.best_model_path, weights_only=True)[0]

    def test_loss(weights: dict[str, torch.Tensor]) -> float:
        other = load_classifier(checkpoints.best_model_path)
        other.load_state_dict(weights)
        return quick_trainer(tmp_path).test(other, datamodule=datamodule, verbose=False)[0]["test/loss"]

    assert tested["test/loss"] == pytest.approx(test_loss(averaged), rel=1e-6)
    assert tested["test/loss"] != pytest.approx(test_loss(raw), rel=1e-4)


def test_test_time_augmentation_averages_the_shifted_views() -> None:
    model = classifier().eval()
    images = torch.randn(5, 1, 28, 28)
    model.test_time_shift = 1
    with torch.no_grad():
        combined = model.view_averaged_logits(images)
        rolls = [(0, -1), (1, -1), (-1, -1), (1, -2), (-1, -2)]
        views = [images if shift == 0 else torch.roll(images, shift, dim) for shift, dim in rolls]
        expected = torch.stack([model(view).softmax(dim=1) for view in views]).mean(dim=0).log()
    torch.testing.assert_close(combined, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shift", [-1, 3, 1.5])
@pytest.mark.parametrize("config", ["evaluate", "train"])
def test_train_and_eval_refuse_test_time_shifts_out_of_range(tmp_path: Path, shift: float, config: str) -> None:
    cfg = compose(config, ["ckpt_path=x.ckpt"] * (config == "evaluate") + [f"test_time_shift={shift}"], tmp_path)
    with pytest.raises(ConfigError, match=f"test_time_shift={shift} must be a whole number of pixels"):
        read_test_time_shift(cfg)
