"""Temperature scaling: fitted on validation, it lowers the NLL and keeps every predicted class; it travels
in the checkpoint to evaluation, prediction and exported models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from emnist_lightning.inference.export import export
from emnist_lightning.inference.models import load_pixel_classifier, open_predictor
from emnist_lightning.models import load_classifier
from emnist_lightning.models.calibration import fit_temperature, nll
from emnist_lightning.training.run import store_temperature


def sampled(sharpness: float, n: int = 6000, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a model that is calibrated at temperature `sharpness`: labels drawn from softmax(z), logits
    sharpness * z."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=generator) * 2
    labels = torch.multinomial(z.softmax(dim=1), 1, generator=generator).squeeze(1)
    return z * sharpness, labels


@pytest.mark.parametrize("sharpness", [3.0, 0.5])
def test_the_fitted_temperature_undoes_over_and_under_confidence(sharpness: float) -> None:
    logits, labels = sampled(sharpness)
    temperature = fit_temperature(logits, labels)
    # 6,000 draws: the NLL's minimum is within a few percent of the true temperature
    assert temperature == pytest.approx(sharpness, rel=0.1)
    assert nll(logits, labels, temperature) < nll(logits, labels)
    assert torch.equal((logits / temperature).argmax(dim=1), logits.argmax(dim=1))


def test_a_calibrated_model_keeps_its_temperature_near_one() -> None:
    logits, labels = sampled(1.0, seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


@pytest.fixture(scope="module")
def hot_checkpoint(synthetic_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic checkpoint with a temperature of 2.5 kept in it, as train.py keeps the fitted one."""
    path = tmp_path_factory.mktemp("calibrated") / "best.ckpt"
    shutil.copy(synthetic_checkpoint, path)
    store_temperature(path, 2.5)
    return path


def test_the_checkpoint_carries_the_temperature_to_every_loader(hot_checkpoint: Path) -> None:
    assert load_classifier(hot_checkpoint).temperature == 2.5
    pixels = torch.rand(16, 1, 28, 28)
    calibrated = load_pixel_classifier(hot_checkpoint)(pixels)
    raw = load_pixel_classifier(hot_checkpoint)
    raw.temperature.fill_(1.0)
    with torch.inference_mode():
        assert torch.allclose(calibrated, raw(pixels) / 2.5, atol=1e-5)
        assert torch.equal(calibrated.argmax(dim=1), raw(pixels).argmax(dim=1))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_exported_model_gives_the_checkpoints_calibrated_probabilities(
    hot_checkpoint: Path, tmp_path: Path, fmt: str
) -> None:
    path, difference = export(hot_checkpoint, fmt, tmp_path, seed=0)
    assert difference < 1e-4
    pixels = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = load_pixel_classifier(hot_checkpoint)(pixels).softmax(dim=1)
        uncalibrated = (load_pixel_classifier(hot_checkpoint)(pixels) * 2.5).softmax(dim=1)
    exported = open_predictor(path, trust_program=True).logits(pixels).softmax(dim=1)
    assert torch.allclose(exported, expected, atol=1e-5)
    assert not torch.allclose(exported, uncalibrated, atol=1e-3), "the temperature is inside the exported graph"
