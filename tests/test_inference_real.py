"""A model trained on real EMNIST reads rendered handwriting as well as it reads the test files, and its
exported copies agree with it. Runs when EMNIST_DATA_DIR points at the Balanced files (CI sets it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import binomtest

from emnist_lightning.data.files import ImageSet, load_split
from emnist_lightning.inference.export import export_onnx, export_torchscript
from emnist_lightning.inference.models import TorchPredictor, load_pixel_classifier, open_predictor, write_classes
from emnist_lightning.models import EMNISTClassifier
from tests.conftest import BALANCED, model_arguments, quick_trainer, run_entry_point, synthetic_datamodule

DATA_DIR = os.environ.get("EMNIST_DATA_DIR")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_data,
    pytest.mark.skipif(not DATA_DIR, reason="set EMNIST_DATA_DIR to a folder with the EMNIST Balanced files"),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN study's network (model=cnn_small: the default CNN at half its channels, about half its time)
    after one epoch on the real training split, saved as train.py saves it."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("real_checkpoint")
    model = EMNISTClassifier(**model_arguments("cnn_small"), optimizer=torch.optim.Adam)
    trainer = quick_trainer(folder, limit_train_batches=None, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_datamodule(DATA_DIR))
    trainer.save_checkpoint(folder / "model.ckpt")
    return folder / "model.ckpt"


@pytest.fixture(scope="module")
def held_out() -> ImageSet:
    """Test-split images (never trained on), in a fixed random order."""
    test = load_split(Path(DATA_DIR), BALANCED, "test")
    return test.subset(torch.randperm(len(test), generator=torch.Generator().manual_seed(0)))


def file_correct(checkpoint: Path, split: ImageSet) -> torch.Tensor:
    """Which images the model reads right as the test files hold them: what evaluate.py measures."""
    logits = TorchPredictor(model := load_pixel_classifier(checkpoint), model.classes).logits(split.images / 255)
    return logits.argmax(1) == split.labels


def file_accuracy(checkpoint: Path, split: ImageSet) -> float:
    return float(file_correct(checkpoint, split).float().mean())


def rendering_loses_reads(on_files: torch.Tensor, rendered: torch.Tensor) -> float:
    """McNemar's exact one-sided p-value that the rendered images are read worse than the same images from
    the files: of the images read right one way only, how unlikely so many are right on the files alone."""
    files_only = int((on_files & ~rendered).sum())
    rendered_only = int((rendered & ~on_files).sum())
    if files_only + rendered_only == 0:
        return 1.0
    return binomtest(files_only, files_only + rendered_only, 0.5, alternative="greater").pvalue


def on_paper(upright: np.ndarray) -> np.ndarray:
    """A 28x28 EMNIST image as dark ink on white paper."""
    return 255 - upright


def predict_folder(checkpoint: Path, inputs: Path, run_dir: Path, *overrides: str) -> dict[str, dict]:
    result = run_entry_point(
        "predict.py", f"ckpt_path={checkpoint}", f"inputs={inputs}", f"hydra.run.dir={run_dir}", *overrides
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {record["file"]: record for record in json.loads((run_dir / "predictions.json").read_text())}


def test_rendered_images_are_read_as_well_as_the_test_files(
    checkpoint: Path, held_out: ImageSet, tmp_path: Path
) -> None:
    """Test images upright, resized to 64-256 pixels, inverted to dark ink on white and placed off-centre on
    a larger page: predict.py reads them no worse than the files, by McNemar's paired test at the 1% level."""
    images = held_out.subset(torch.arange(600))
    rng = np.random.default_rng(0)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i, image in enumerate(images.images[:, 0].numpy()):
        side = int(rng.integers(64, 257))
        drawn = Image.fromarray(on_paper(image)).resize((side, side), Image.BICUBIC)
        left, top, right, bottom = rng.integers(0, side // 2, 4)
        page = Image.new("L", (side + left + right, side + top + bottom), 255)
        page.paste(drawn, (int(left), int(top)))
        page.save(inputs / f"{i:04d}.png")
    records = predict_folder(checkpoint, inputs, tmp_path / "run")
    read = torch.tensor([BALANCED.classes.index(records[f"{i:04d}.png"]["text"]) for i in range(len(images))])
    rendered, on_files = read == images.labels, file_correct(checkpoint, images)
    p_value = rendering_loses_reads(on_files, rendered)
    print(f"accuracy on the files {on_files.float().mean():.4f}, on rendered images {rendered.float().mean():.4f}")
    assert on_files.float().mean() > 0.7  # a model that reads, so that the comparison means something
    # 600 images: a fixed tolerance of a point would be crossed by chance; a paired test is not, unless
    # the conversion really loses reads
    assert p_value >= 0.01, f"the rendered images are read worse than the files (McNemar p={p_value:.4f})"


def test_a_word_of_separated_characters_reads_back(checkpoint: Path, held_out: ImageSet, tmp_path: Path) -> None:
    """40 words of 4 test characters, 6 pixels apart, drawn 3x larger: predict.segment=true finds 4
    characters in at least 38 words, and reads the characters at no less than 3 points below the model's
    accuracy on the same characters' files (a mis-split word counts all its characters as wrong)."""
    words, length = 40, 4
    characters = held_out.subset(torch.arange(1000, 1000 + words * length))
    inputs = tmp_path / "words"
    inputs.mkdir()
    gap = np.full((28, 6), 255, dtype=np.uint8)
    for w in range(words):
        parts = [
            part
            for image in characters.images[w * length : (w + 1) * length, 0].numpy()
            for part in (gap, on_paper(image))
        ]
        word = np.pad(np.concatenate([*parts, gap], axis=1), ((6, 6), (0, 0)), constant_values=255)
        Image.fromarray(word).resize((word.shape[1] * 3, word.shape[0] * 3), Image.BICUBIC).save(
            inputs / f"{w:02d}.png"
        )
    records = predict_folder(checkpoint, inputs, tmp_path / "run", "predict.segment=true")
    texts = [records[f"{w:02d}.png"]["text"] for w in range(words)]
    split_right = [len(text) == length for text in texts]
    truth = [
        "".join(BALANCED.classes[label] for label in characters.labels[w * length : (w + 1) * length])
        for w in range(words)
    ]
    correct = sum(
        a == b
        for text, true in zip(texts, truth, strict=True)
        if len(text) == length
        for a, b in zip(text, true, strict=True)
    )
    word_accuracy, expected = correct / (words * length), file_accuracy(checkpoint, characters)
    print(f"words split right {sum(split_right)}/{words}; characters read {word_accuracy:.4f} vs files {expected:.4f}")
    assert sum(split_right) >= words - 2
    assert word_accuracy >= expected - 0.03


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_models_agree_with_pytorch(checkpoint: Path, held_out: ImageSet, tmp_path: Path, fmt: str) -> None:
    """1,000 test images: the same top-1 as the PyTorch model, logits within 1e-4."""
    model = load_pixel_classifier(checkpoint)
    path = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    write_classes(path, BALANCED.classes)
    {"onnx": export_onnx, "torchscript": export_torchscript}[fmt](model, path)
    pixels = held_out.images[:1000] / 255
    expected = TorchPredictor(model, model.classes).logits(pixels)
    exported = open_predictor(path, trust_program=True).logits(pixels)
    difference = float((exported - expected).abs().max())
    agree = int((exported.argmax(1) == expected.argmax(1)).sum())
    print(f"{fmt}: top-1 agrees on {agree}/1000, max |logit diff| {difference:.2e}")
    assert exported.shape == (1000, 47)
    assert torch.equal(exported.argmax(1), expected.argmax(1))
    assert difference < 1e-4
