"""Files and requests made to hurt (issue 31): model files that are programs, numbers in model files that
break the arithmetic, images and arrays that crash or cost far more than they look, and a sweep folder
with a damaged job. Each is refused or skipped with one line, and nothing else is touched."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from emnist_lightning.analysis import report
from emnist_lightning.errors import CheckpointError
from emnist_lightning.inference.export import export
from emnist_lightning.inference.images import InputError, read_all, read_array, read_picture
from emnist_lightning.inference.models import open_predictor, write_classes
from emnist_lightning.inference.server import RefusedDrawing, drawing_pixels
from emnist_lightning.models import load_classifier
from tests.conftest import run_entry_point

# Model files


class FileWriter(torch.nn.Module):
    """A scripted model whose forward writes into a file through a shared mapping: what a planted .pt could do."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        planted = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
        planted.fill_(88)
        return torch.zeros(pixels.shape[0], 2)


def test_a_torchscript_file_is_refused_without_the_opt_in_and_runs_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"safe")
    model = tmp_path / "model.pt"
    torch.jit.script(FileWriter(str(victim))).save(str(model))
    write_classes(model, ("a", "b"))
    with pytest.raises(CheckpointError, match="is a TorchScript program.*trust_program=true") as caught:
        open_predictor(model)
    assert "\n" not in str(caught.value)
    assert victim.read_bytes() == b"safe"
    result = run_entry_point("predict.py", f"ckpt_path={model}", f"inputs={model}", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode == 1 and "TorchScript program" in result.stderr
    assert victim.read_bytes() == b"safe"


def test_the_opt_in_opens_a_trusted_torchscript_export(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    path, _ = export(synthetic_checkpoint, "torchscript", tmp_path, seed=0)
    assert len(open_predictor(path, trust_program=True).classes) == 47


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.__setitem__("temperature", 0.0), "temperature is 0.0; it must be a finite number above 0"),
        (lambda c: c.__setitem__("temperature", float("nan")), "temperature is nan"),
        (lambda c: c["EMNISTDataModule"].__setitem__("std", 0.0), "pixel std is 0.0"),
        (lambda c: c["EMNISTDataModule"].__setitem__("mean", float("inf")), "pixel mean is inf"),
    ],
    ids=["zero-temperature", "nan-temperature", "zero-std", "infinite-mean"],
)
def test_numbers_in_a_checkpoint_are_checked(synthetic_checkpoint: Path, tmp_path: Path, change, message) -> None:
    checkpoint = torch.load(synthetic_checkpoint, map_location="cpu", weights_only=True)
    change(checkpoint)
    path = tmp_path / "changed.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=message) as caught:
        open_predictor(path)
    assert "\n" not in str(caught.value) and "changed.ckpt" in str(caught.value)


def test_a_temperature_of_zero_is_refused_by_the_classifier_too(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(synthetic_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["temperature"] = -1.0
    torch.save(checkpoint, tmp_path / "negative.ckpt")
    with pytest.raises(CheckpointError, match="negative.ckpt.*temperature is -1.0"):
        load_classifier(tmp_path / "negative.ckpt")


def test_a_class_list_that_is_not_names_is_refused(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    path, _ = export(synthetic_checkpoint, "onnx", tmp_path, seed=0)
    path.with_suffix(".json").write_text(json.dumps({"classes": [1, None]}))
    with pytest.raises(CheckpointError, match="model.json' .* is missing or unreadable"):
        open_predictor(path)


# Images and arrays


def grey16_png(path: Path, ink: int, paper: int) -> Path:
    levels = np.full((60, 60), paper, dtype=np.uint16)
    levels[10:50, 25:35] = ink
    Image.fromarray(levels).save(path)  # a uint16 array is a 16-bit grey image, I;16
    return path


def test_sixteen_bit_grey_keeps_its_ink(tmp_path: Path) -> None:
    """Dark ink at 1,000 of 65,535 on paper at 60,000: Pillow's 8-bit conversion made both white."""
    grey = read_picture(grey16_png(tmp_path / "scan.png", ink=1_000, paper=60_000))
    assert grey[30, 30] == pytest.approx(1_000 / 65_535, abs=1e-4)
    assert grey[5, 5] == pytest.approx(60_000 / 65_535, abs=1e-4)
    samples, failures = read_all([tmp_path / "scan.png"], segment=False)
    assert not failures and len(samples) == 1


def test_only_the_named_image_formats_are_decoded(tmp_path: Path) -> None:
    eps = tmp_path / "drawing.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n")
    tiff = tmp_path / "scan.png"
    Image.new("L", (40, 40), 0).save(tiff, format="TIFF")
    for path in (eps, tiff):
        with pytest.raises(InputError, match="not a PNG, JPEG or BMP image"):
            read_picture(path)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1_000_000_000, 28, 28), "holds 1,000,000,000 images, more than 100,000"), ((0, 28, 28), "holds no images")],
    ids=["header-claims-a-billion", "empty"],
)
def test_arrays_that_claim_too_much_or_nothing_are_skipped(tmp_path: Path, shape: tuple, message: str) -> None:
    path = tmp_path / "images.npy"
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "|u1", "fortran_order": False, "shape": shape}
        )  # a header, and no data
    with pytest.raises(InputError, match=message):
        read_array(path)
    samples, failures = read_all([path], segment=False)
    assert samples == [] and list(failures) == [str(path)]


def tall_png(width: int, height: int) -> bytes:
    image = Image.new("L", (width, height), 255)
    image.paste(0, (width // 3, 10, 2 * width // 3, height - 10))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def test_a_tall_thin_drawing_is_refused_before_it_costs_memory() -> None:
    """256 x 16,384 is 4 M pixels, inside a width x height budget, but the conversion's square frame of the
    longer side would be 268 M; measured: refused with 413, decoding nothing."""
    png = tall_png(256, 16_384)
    tracemalloc.start()
    with pytest.raises(RefusedDrawing, match="at most 2,048 pixels on its longer side") as caught:
        drawing_pixels(png, "the drawing")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert caught.value.status == 413
    assert peak < 5 * len(png) + 1_000_000, f"{peak:,} bytes allocated to refuse it"


# The report


def damaged_sweep(sweep_dir: Path) -> None:
    """Job 0 finished; job 1's record has a history that is not a mapping; job 2's overrides are not YAML."""
    for job, overrides in enumerate((["optimizer=sgd"], ["optimizer=adam"], None)):
        folder = sweep_dir / str(job)
        (folder / ".hydra").mkdir(parents=True)
        text = yaml.safe_dump(overrides) if overrides else "- optimizer=[unclosed\n  : : ]"
        (folder / ".hydra" / "overrides.yaml").write_text(text)
        record = {"status": "completed", "val_acc": 0.5 + job / 10, "test_acc": 0.5, "history": {"val/acc": [0.5]}}
        if job == 1:
            record["history"] = []
        (folder / "metrics.json").write_text(json.dumps(record))


def test_the_report_lists_broken_jobs_and_goes_on(tmp_path: Path) -> None:
    damaged_sweep(tmp_path)
    table = report.report(tmp_path, quiet=True)
    statuses = dict(zip(table["job"], table["status"], strict=True))
    assert statuses == {"0": "completed", "1": "broken", "2": "broken"}
    errors = dict(zip(table["job"], table["error"], strict=True))
    assert "AttributeError" in errors["1"] and "unreadable job files" in errors["2"]
