"""Using a trained model on a user's images: EMNIST's conversion, word splitting, predict.py, export."""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emnist_lightning.data import idx
from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.inference.images import (
    INK_SIDE,
    INK_THRESHOLD,
    MAX_SIDE,
    InputError,
    emnist_view,
    find_inputs,
    ink_image,
    read_array,
    read_picture,
    read_samples,
)
from emnist_lightning.inference.models import load_pixel_classifier, open_predictor, write_classes
from emnist_lightning.inference.segment import split_characters
from emnist_lightning.inference.server import make_server
from emnist_lightning.models import EMNISTClassifier
from tests.conftest import run_entry_point, synthetic_datamodule, write_gzip_bomb


def ink_extent(view: torch.Tensor, level: float = INK_THRESHOLD) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows and columns holding ink, inclusive."""
    rows, columns = (view > level).nonzero(as_tuple=True)
    return int(rows.min()), int(rows.max()), int(columns.min()), int(columns.max())


def dark_ink_on_paper(height: int, width: int, strokes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A white page (0..1 grey) with black rectangles (top, bottom, left, right) as strokes."""
    page = np.ones((height, width), dtype=np.float32)
    for top, bottom, left, right in strokes:
        page[top:bottom, left:right] = 0
    return page


def test_view_is_centred_ink_filling_the_frame_but_a_border() -> None:
    # a tall bar far off-centre in a large page: the view centres it and scales its height to the frame
    page = dark_ink_on_paper(300, 400, [(40, 200, 300, 340)])
    view = emnist_view(ink_image(page))[0]
    assert view.shape == (28, 28)
    assert view.min() >= 0 and view.max() == pytest.approx(1.0)
    top, bottom, left, right = ink_extent(view)
    assert bottom - top + 1 == pytest.approx(INK_SIDE, abs=1)  # the longer side, border of 2 pixels
    assert abs((top + bottom) / 2 - 13.5) <= 1 and abs((left + right) / 2 - 13.5) <= 1
    assert right - left + 1 < 12  # the aspect ratio is kept: a bar stays narrow


def test_dark_ink_on_light_paper_and_light_on_dark_give_the_same_view() -> None:
    page = dark_ink_on_paper(120, 90, [(20, 100, 30, 45), (20, 35, 30, 70)])
    assert torch.allclose(emnist_view(ink_image(page)), emnist_view(ink_image(1 - page)))
    # grey paper and grey ink (a photo) look the same as black and white once converted
    photo = 0.35 + 0.4 * page
    assert torch.allclose(emnist_view(ink_image(photo)), emnist_view(ink_image(page)), atol=1e-5)


def test_an_image_without_ink_is_refused() -> None:
    with pytest.raises(InputError, match="blank.png: no ink found"):
        ink_image(np.full((50, 50), 0.97, dtype=np.float32), "blank.png")


def test_unreadable_and_transparent_images(tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    with pytest.raises(InputError, match=r"notes.png: not a PNG, JPEG or BMP image"):
        read_picture(fake)
    # a transparent PNG with black strokes reads as black ink on white paper
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[10:30, 18:22] = (0, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "stroke.png")
    grey = read_picture(tmp_path / "stroke.png")
    assert grey[0, 0] == 1.0 and grey[20, 20] == 0.0


def test_inputs_are_a_file_a_folder_or_a_glob(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_inputs(str(tmp_path))] == ["a.jpg", "b.png"]
    assert [p.name for p in find_inputs(str(tmp_path / "*.png"))] == ["b.png"]
    assert find_inputs(str(tmp_path / "notes.txt")) == [tmp_path / "notes.txt"]
    with pytest.raises(ConfigError, match="no such file or folder"):
        find_inputs(str(tmp_path / "missing*.png"))


def test_arrays_are_taken_as_they_are(tmp_path: Path) -> None:
    upright = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "images.npy", upright)
    idx.write_idx(tmp_path / "images-idx3-ubyte", upright.transpose(0, 2, 1))  # stored transposed, like EMNIST
    expected = torch.from_numpy(upright).float()[:, None] / 255
    assert torch.equal(read_array(tmp_path / "images.npy"), expected)
    assert torch.equal(read_array(tmp_path / "images-idx3-ubyte"), expected)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 32, 32)))
    with pytest.raises(InputError, match=r"wrong.npy: holds an array of shape \(2, 32, 32\)"):
        read_array(tmp_path / "wrong.npy")


def test_a_word_splits_into_its_characters_with_dots_on_their_stems() -> None:
    strokes = [
        (30, 90, 10, 22),  # a bar
        (30, 90, 40, 52),  # an i: its stem ...
        (10, 20, 42, 50),  # ... and its dot, in the same columns
        (30, 90, 70, 80),  # a bar whose dot was written just beside it
        (12, 20, 82, 86),
        (30, 90, 110, 140),  # a wide block
        (95, 97, 170, 171),  # a speck of dirt far from everything
    ]
    characters = split_characters(ink_image(dark_ink_on_paper(110, 175, strokes)))
    inked_widths = [int((character > 0.5).any(dim=0).sum()) for character in characters]
    assert inked_widths == [12, 12, 4 + 10, 30]  # the dot beside the third bar is its own, the speck gone
    assert sum(character.shape[1] for character in characters) == 175  # cut mid-gap: no column lost


def test_a_blank_image_has_no_characters() -> None:
    assert split_characters(torch.zeros(20, 30)) == []


def test_pixel_classifier_normalises_as_training_did(synthetic_checkpoint: Path, synthetic_dir: Path) -> None:
    datamodule = synthetic_datamodule(synthetic_dir)
    datamodule.load_state_dict(torch.load(synthetic_checkpoint, weights_only=True)["EMNISTDataModule"])
    datamodule.setup("test")
    images = datamodule.test_set.images[:16]
    model = load_pixel_classifier(synthetic_checkpoint)
    classifier = EMNISTClassifier.load_from_checkpoint(synthetic_checkpoint, weights_only=True).eval()
    with torch.no_grad():
        assert torch.allclose(model(images / 255), classifier(datamodule.normalize(images)), atol=1e-5)


@pytest.mark.slow
def test_predict_reads_every_input_and_reports_the_bad_ones(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray((dark_ink_on_paper(80, 60, [(10, 70, 25, 35)]) * 255).astype(np.uint8)).save(inputs / "one.png")
    np.save(inputs / "two.npy", np.zeros((2, 28, 28), dtype=np.uint8))
    (inputs / "broken.png").write_text("not an image")
    Image.new("L", (40, 40), 255).save(inputs / "blank.bmp")
    write_gzip_bomb(inputs / "bomb-idx3-ubyte.gz", declared_images=10**8)
    run_dir = tmp_path / "run"
    result = run_entry_point(
        "predict.py", f"ckpt_path={synthetic_checkpoint}", f"inputs={inputs}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "skipped: " in result.stdout and "broken.png: not a PNG, JPEG or BMP image" in result.stdout
    assert "blank.bmp: no ink found" in result.stdout
    assert "bomb-idx3-ubyte.gz: not a readable .npy or IDX image array" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "error: 3 of 6 inputs could not be predicted (listed above)"
    records = json.loads((run_dir / "predictions.json").read_text())
    predicted = [record for record in records if "error" not in record]
    assert [record["file"] for record in predicted] == ["one.png", "two.npy[0]", "two.npy[1]"]
    assert all(len(record["characters"][0]) == 3 for record in predicted)
    assert len((run_dir / "predictions.csv").read_text().splitlines()) == 4
    with Image.open(run_dir / "predictions.png") as sheet:
        assert sheet.width > 800


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["ckpt_path=null", "inputs=x.png"], "error: no model given: pass ckpt_path="),
        (["ckpt_path=missing.ckpt", "inputs=x.png"], "error: model 'missing.ckpt' does not exist"),
        (["ckpt_path=CKPT", "inputs=nothing/here*.png"], "error: inputs=nothing/here*.png: no such file or folder"),
    ],
)
def test_predict_usage_errors_are_one_line(
    synthetic_checkpoint: Path, tmp_path: Path, overrides: list, message: str
) -> None:
    overrides = [o.replace("CKPT", str(synthetic_checkpoint)) for o in overrides]
    result = run_entry_point("predict.py", *overrides, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]
    assert result.stderr.strip().startswith(message)


def test_an_exported_model_without_its_class_list_or_broken_is_refused(tmp_path: Path) -> None:
    for name in ("model.pt", "model.onnx"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(CheckpointError, match=rf"model.json' \(the class list of {name}\) is missing"):
            open_predictor(tmp_path / name, trust_program=True)
    write_classes(tmp_path / "model.pt", ("a", "b"))
    with pytest.raises(CheckpointError, match=r"model.pt' is not a readable TorchScript model; export it again"):
        open_predictor(tmp_path / "model.pt", trust_program=True)
    with pytest.raises(CheckpointError, match=r"model.onnx' is not a loadable ONNX model"):
        open_predictor(tmp_path / "model.onnx")


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_writes_a_model_that_predict_runs_alike(
    synthetic_checkpoint: Path, tmp_path: Path, fmt: str, suffix: str
) -> None:
    export_dir = tmp_path / "export"
    result = run_entry_point(
        "emnist_lightning.cli.export",
        f"ckpt_path={synthetic_checkpoint}",
        f"format={fmt}",
        f"hydra.run.dir={export_dir}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    details = json.loads((export_dir / "model.json").read_text())
    assert len(details["classes"]) == 47 and details["max_abs_logit_difference"] < 1e-4
    inputs = tmp_path / "one.png"
    Image.fromarray((dark_ink_on_paper(80, 60, [(10, 70, 25, 35), (10, 20, 25, 50)]) * 255).astype(np.uint8)).save(
        inputs
    )
    tables = []
    for model in (synthetic_checkpoint, export_dir / f"model{suffix}"):
        run = run_entry_point(
            "predict.py",
            f"ckpt_path={model}",
            f"inputs={inputs}",
            f"hydra.run.dir={tmp_path / model.name}",
            f"trust_program={model.suffix == '.pt'}",  # the file this test exported
        )
        assert run.returncode == 0, run.stderr[-2000:]
        tables.append([line for line in run.stdout.splitlines() if line.startswith("one.png")])
    assert len(tables[0]) == 1 and tables[0] == tables[1]


@pytest.mark.slow
def test_export_refuses_an_unknown_format(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    result = run_entry_point(
        "emnist_lightning.cli.export", f"ckpt_path={synthetic_checkpoint}", "format=tflite", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: format=tflite is not one of onnx, torchscript"


def test_tiny_and_huge_images(tmp_path: Path) -> None:
    Image.new("L", (1, 1), 0).save(tmp_path / "dot.png")
    with pytest.raises(InputError, match=r"dot.png: the image is 1x1 pixels, too small to hold a character"):
        read_picture(tmp_path / "dot.png")
    # 10,000 x 10,000 pixels with a thick stroke: scaled down on reading, then converted as usual
    huge = Image.new("L", (10_000, 10_000), 255)
    huge.paste(0, (4_000, 2_000, 5_000, 8_000))
    huge.save(tmp_path / "huge.png")
    (sample,) = read_samples(tmp_path / "huge.png")
    assert max(sample.picture.shape) == MAX_SIDE
    top, bottom, left, right = ink_extent(sample.views[0, 0])
    assert bottom - top + 1 == pytest.approx(INK_SIDE, abs=1) and right - left + 1 < 8


@pytest.fixture
def server(synthetic_checkpoint: Path) -> Iterator[str]:
    """The drawing page's server on a free port, in this process."""
    server = make_server(open_predictor(synthetic_checkpoint), "127.0.0.1", 0, top_k=5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(f"{url}/predict", data=body, method="POST", headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_server_answers_bad_drawings_with_a_message_and_goes_on(server: str) -> None:
    stroke = Image.new("RGBA", (280, 280), "white")
    stroke.paste((0, 0, 0, 255), (120, 40, 150, 240))
    assert post(server, png_bytes(Image.new("RGBA", (280, 280), "white"))) == {
        "message": "no ink found (the image is nearly one shade)"
    }
    assert post(server, png_bytes(Image.new("L", (1, 1)))) == {
        "message": "the image is 1x1 pixels, too small to hold a character"
    }
    answer = post(server, png_bytes(stroke))  # still serving, and a real drawing is read
    assert len(answer["top"]) == 5 and len(answer["probabilities"]) == 47
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=0.005)
    assert np.array(answer["view"]).shape == (28, 28)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"{server}/static/../models.py", timeout=30)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda path: path.write_text("not a checkpoint"), "cannot be read (not plain checkpoint data); it is corrupt"),
        (lambda path: torch.save({"state_dict": {}}, path), "was not written by emnist_lightning's train.py"),
    ],
)
def test_a_checkpoint_of_the_wrong_kind_is_one_clear_error(tmp_path: Path, write, message: str) -> None:
    path = tmp_path / "model.ckpt"
    write(path)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        open_predictor(path)
