"""Training-batch augmentation: label- and shape-preserving, seeded, training batches only, no flips."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from emnist_lightning.data.augment import BatchAugment, shifted_views
from emnist_lightning.errors import ConfigError
from emnist_lightning.models import EMNISTClassifier
from emnist_lightning.runs.config import compose
from emnist_lightning.training.build import build_datamodule
from tests.conftest import configured_settings, model_arguments, quick_trainer, synthetic_datamodule

STRENGTHS = {
    "shift": {"max_shift": 2},
    "affine": {"max_shift": 2, "degrees": 15.0, "scale": 0.15, "shear": 15.0},
    "elastic": {"elastic_alpha": 34.0, "elastic_sigma": 4.0},
    "erasing": {"erase_prob": 1.0, "erase_max_area": 0.3},
}


def augmentation(**strengths: object) -> BatchAugment:
    """conf/augment/none.yaml's BatchAugment (every strength 0), with `strengths` set."""
    return BatchAugment(**(configured_settings("augment") | strengths))


def characters(count: int = 64, seed: int = 0) -> torch.Tensor:
    """(count, 1, 28, 28) images in [0, 1]: random ink inside EMNIST's blank 2-pixel border."""
    images = torch.zeros(count, 1, 28, 28)
    images[..., 4:24, 4:24] = torch.rand(count, 1, 20, 20, generator=torch.Generator().manual_seed(seed))
    return images


@pytest.mark.parametrize("kind", STRENGTHS)
def test_keeps_shape_dtype_and_range_and_changes_the_images(kind: str) -> None:
    images = characters()
    augmented = augmentation(**STRENGTHS[kind])(images)
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    assert augmented.min() >= 0 and augmented.max() <= 1 + 1e-6
    changed = (augmented - images).abs().flatten(1).amax(dim=1) > 1e-3
    assert changed.float().mean() > 0.5  # most images moved; a shift may draw (0, 0) for a few


def test_all_strengths_zero_is_the_identity() -> None:
    augment = augmentation()
    images = characters()
    assert augment.is_identity and torch.equal(augment(images), images)
    # the warp itself is the identity at zero strength, not only skipped
    warped = F.grid_sample(images, augment.sampling_grid(images), mode="bilinear", align_corners=False)
    torch.testing.assert_close(warped, images, atol=1e-5, rtol=0)


def test_a_shift_moves_whole_pixels_within_max_shift() -> None:
    images = characters(32)
    torch.manual_seed(3)
    shifted = augmentation(max_shift=2)(images)
    candidates = {(dx, dy): torch.roll(images, (dy, dx), (-2, -1)) for dx in range(-2, 3) for dy in range(-2, 3)}
    for index in range(len(images)):
        errors = [(shifted[index] - moved[index]).abs().max().item() for moved in candidates.values()]
        assert min(errors) < 1e-5, f"image {index} is not a whole-pixel shift of at most 2"


def test_repeats_with_a_seed_and_differs_without() -> None:
    augment = augmentation(**STRENGTHS["affine"], **STRENGTHS["elastic"], **STRENGTHS["erasing"])
    images = characters()
    torch.manual_seed(11)
    first = augment(images)
    torch.manual_seed(11)
    assert torch.equal(augment(images), first)
    torch.manual_seed(12)
    assert not torch.equal(augment(images), first)


@pytest.mark.parametrize("flip", ["hflip", "vflip"])
def test_flips_are_refused(tmp_path: Path, flip: str) -> None:
    with pytest.raises(ConfigError, match="b is a d"):
        augmentation(**{flip: True})
    cfg = compose("train", ["augment=affine", f"augment.{flip}=true"], tmp_path)
    with pytest.raises(Exception) as raised:
        build_datamodule(cfg)
    assert "b is a d" in str(raised.value.__cause__ or raised.value)


@pytest.mark.parametrize(
    ("key", "value"), [("degrees", -1.0), ("scale", 1.0), ("elastic_sigma", 0.0), ("erase_prob", 1.5)]
)
def test_bad_strengths_are_refused(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"augment.{key}"):
        augmentation(**{key: value})


class BatchRecorder(L.Callback):
    """The batches each stage's step received, after the data module's transfer hook."""

    def __init__(self) -> None:
        self.batches: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"train": [], "val": [], "test": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches["train"].append(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.batches["val"].append(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.batches["test"].append(batch)


def test_only_training_batches_are_augmented_and_labels_are_kept(tmp_path: Path, synthetic_dir: Path) -> None:
    augment = augmentation(**STRENGTHS["affine"], erase_prob=0.5)
    datamodule = synthetic_datamodule(synthetic_dir, batch_size=64, augment=augment)
    recorder = BatchRecorder()
    model = EMNISTClassifier(**model_arguments("mlp"), optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    trainer = quick_trainer(tmp_path, limit_train_batches=None, limit_val_batches=None, callbacks=[recorder])
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule)

    for stage, split in (("val", datamodule.val_set), ("test", datamodule.test_set)):
        images = torch.cat([batch[0] for batch in recorder.batches[stage]])
        assert torch.equal(images, datamodule.normalize(split.images)), f"{stage} batches were changed"
    # the training epoch saw every training image once, with its own label, but distorted
    train_images = torch.cat([batch[0] for batch in recorder.batches["train"]])
    train_labels = torch.cat([batch[1] for batch in recorder.batches["train"]])
    order = datamodule.train_dataloader().sampler
    order.set_epoch(0)
    indices = torch.cat(list(order))
    assert torch.equal(train_labels, datamodule.train_set.labels[indices])
    plain = datamodule.normalize(datamodule.train_set.images[indices])
    assert train_images.shape == plain.shape
    assert not torch.allclose(train_images, plain)


def test_shifted_views_for_test_time_augmentation() -> None:
    images = characters(4)
    views = shifted_views(images, 2)
    assert len(views) == 9 and views[0] is images
    expected = [torch.roll(images, (dy, dx), (-2, -1)) for d in (1, 2) for dx, dy in ((d, 0), (-d, 0), (0, d), (0, -d))]
    assert all(torch.equal(view, moved) for view, moved in zip(views[1:], expected, strict=True))
