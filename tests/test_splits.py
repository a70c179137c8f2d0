"""The six EMNIST splits: their classes, Letters' labels 1..26, and the classes travelling with a model
into evaluation, prediction, export and the drawing page."""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emnist_lightning.data import SPLITS, emnist_split, idx
from emnist_lightning.data.files import find_file
from emnist_lightning.errors import CheckpointError, ConfigError, DataError
from emnist_lightning.inference.export import export
from emnist_lightning.inference.images import read_all
from emnist_lightning.inference.models import open_predictor
from emnist_lightning.inference.results import predict_samples
from emnist_lightning.inference.server import make_server
from emnist_lightning.models import EMNISTClassifier, load_classifier
from emnist_lightning.runs.config import compose
from emnist_lightning.runs.context import RunContext
from emnist_lightning.training.evaluation import evaluate
from tests.conftest import (
    BALANCED,
    model_arguments,
    quick_trainer,
    run_entry_point,
    synthetic_datamodule,
    write_synthetic_emnist,
)

DATA_DIR = os.environ.get("EMNIST_DATA_DIR")
needs_stand_ins = pytest.mark.skipif(not DATA_DIR, reason="set EMNIST_DATA_DIR to the folder of EMNIST stand-ins")
LETTERS = SPLITS["letters"]
DIGITS = set("0123456789")


def test_every_split_has_its_official_classes() -> None:
    counts = {name: split.num_classes for name, split in SPLITS.items()}
    assert counts == {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10, "mnist": 10}
    assert SPLITS["balanced"].classes == SPLITS["bymerge"].classes and len(set(SPLITS["byclass"].classes)) == 62
    assert LETTERS.classes[0] == "A/a" and LETTERS.classes[-1] == "Z/z" and LETTERS.first_label == 1
    assert (SPLITS["byclass"].official_train, SPLITS["letters"].official_test) == (697_932, 20_800)


def test_an_unknown_split_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="data.split='kmnist'.*balanced.*letters"):
        emnist_split("kmnist")


def test_letters_labels_1_to_26_become_26_outputs(tmp_path: Path) -> None:
    """The files label a/A 1 and z/Z 26: class 0 is 'A/a', class 25 is 'Z/z', and none is dropped."""
    folder = write_synthetic_emnist(tmp_path, split="letters", train_per_class=4, test_per_class=2)
    datamodule = synthetic_datamodule(folder, split="letters")
    datamodule.setup("test")
    in_files = idx.read_labels(find_file(folder, LETTERS.file_names("test")[1]))
    assert in_files.min() == 1 and in_files.max() == 26
    assert torch.equal(datamodule.test_set.labels, torch.from_numpy(in_files.astype("int64") - 1))
    assert torch.bincount(datamodule.test_set.labels).tolist() == [2] * 26


def test_letters_files_with_a_label_0_are_refused(tmp_path: Path) -> None:
    """Files labelled 0..25 under Letters' names are another split's (or shifted): one clear error."""
    folder = write_synthetic_emnist(tmp_path, split="letters", train_per_class=2, test_per_class=1)
    labels_path = find_file(folder, LETTERS.file_names("test")[1])
    idx.write_idx(labels_path, idx.read_labels(labels_path) - 1)
    with pytest.raises(DataError, match=r"label 0 is outside 1\.\.26"):
        synthetic_datamodule(folder, split="letters").setup("test")


def test_a_mapping_file_of_another_split_is_refused(tmp_path: Path) -> None:
    folder = write_synthetic_emnist(tmp_path, split="digits", train_per_class=2, test_per_class=1)
    (folder / SPLITS["digits"].mapping_file).write_text("".join(f"{i} {65 + i}\r\n" for i in range(10)))
    with pytest.raises(DataError, match="not the official digits classes"):
        synthetic_datamodule(folder, split="digits").setup("test")


def test_a_checkpoint_carries_its_split_and_classes(letters_checkpoint: Path) -> None:
    model = load_classifier(letters_checkpoint)
    assert (
        model.split == "letters"
        and model.classes == LETTERS.classes
        and model(torch.rand(2, 1, 28, 28)).shape == (2, 26)
    )


def test_evaluation_uses_the_checkpoints_split(letters_checkpoint: Path, tmp_path: Path) -> None:
    """evaluate.py's data=model_split: the Letters model is tested on the Letters files of data_dir."""
    folder = write_synthetic_emnist(tmp_path / "data", split="letters")
    cfg = compose("evaluate", [f"ckpt_path={letters_checkpoint}", f"data.data_dir={folder}", "logger=[]"], tmp_path)
    record = evaluate(cfg, RunContext(tmp_path))
    assert (
        0 <= record.test_acc <= 1 and json.loads((tmp_path / "metrics.json").read_text())["test_acc"] == record.test_acc
    )


def test_a_letters_model_on_balanced_files_is_one_line(
    letters_checkpoint: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    result = run_entry_point(
        "evaluate.py",
        f"ckpt_path={letters_checkpoint}",
        "data=balanced",
        f"data.data_dir={synthetic_dir}",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.stderr.strip().endswith(line) and "trained on EMNIST letters (26 classes)" in line, line
    assert "data=letters" in line


def test_a_classifier_refuses_data_with_other_classes(tmp_path: Path, synthetic_dir: Path) -> None:
    model = EMNISTClassifier(**model_arguments("mlp", split="digits", classes=SPLITS["digits"].classes))
    with pytest.raises(CheckpointError, match="EMNIST digits .10 classes. but the data is EMNIST balanced"):
        quick_trainer(tmp_path).test(model, datamodule=synthetic_datamodule(synthetic_dir))


def ink_png(path: Path) -> Path:
    canvas = np.full((64, 64), 255, np.uint8)
    canvas[12:52, 28:36] = 0  # a stroke: a 1, an l or an I
    Image.fromarray(canvas).save(path)
    return path


@pytest.mark.parametrize(
    ("checkpoint", "allowed"), [("digits_checkpoint", DIGITS), ("letters_checkpoint", set(LETTERS.classes))]
)
def test_predictions_name_the_models_classes_only(
    checkpoint: str, allowed: set[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    predictor = open_predictor(request.getfixturevalue(checkpoint))
    samples, failures = read_all([ink_png(tmp_path / "one.png")], segment=False)
    (prediction,) = predict_samples(predictor, samples, top_k=len(predictor.classes))
    assert not failures and {name for name, _ in prediction.top[0]} == allowed


def test_an_exported_digits_model_names_digits(digits_checkpoint: Path, tmp_path: Path) -> None:
    path, difference = export(digits_checkpoint, "torchscript", tmp_path, seed=0)
    described = json.loads(path.with_suffix(".json").read_text())
    assert described["split"] == "digits" and described["classes"] == sorted(DIGITS) and difference < 1e-4
    assert open_predictor(path, trust_program=True).classes == tuple(sorted(DIGITS))
    path.with_suffix(".json").write_text(json.dumps({"classes": list(BALANCED.classes)}))  # another model's list
    with pytest.raises(CheckpointError, match="names 47 classes but model.pt has 10 outputs"):
        open_predictor(path, trust_program=True)


@pytest.fixture
def digits_server(digits_checkpoint: Path) -> Iterator[str]:
    server = make_server(open_predictor(digits_checkpoint), "127.0.0.1", 0, top_k=3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_drawing_page_of_a_digits_model_asks_for_digits(digits_server: str, tmp_path: Path) -> None:
    with urllib.request.urlopen(f"{digits_server}/model") as reply:
        model = json.loads(reply.read())
    assert model["classes"] == sorted(DIGITS) and model["what_to_draw"] == "A digit, 0 to 9"
    request = urllib.request.Request(
        f"{digits_server}/predict",
        data=ink_png(tmp_path / "one.png").read_bytes(),
        headers={"Content-Type": "image/png"},
    )
    with urllib.request.urlopen(request) as reply:
        answer = json.loads(reply.read())
    assert set(answer["probabilities"]) == DIGITS


@needs_stand_ins
@pytest.mark.real_data
@pytest.mark.parametrize("name", list(SPLITS))
def test_every_split_trains_on_its_stand_in(name: str, tmp_path: Path) -> None:
    """A few steps on each real stand-in: the split's class count in the data, its mapping file, and every
    class present in train and test (Letters included: no label dropped or shifted)."""
    split = SPLITS[name]
    datamodule = synthetic_datamodule(DATA_DIR, split=name, batch_size=64)
    model = EMNISTClassifier(**model_arguments("mlp", split=name, classes=split.classes), optimizer=torch.optim.Adam)
    trainer = quick_trainer(tmp_path, limit_val_batches=2, limit_test_batches=2)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 3 and model.network(torch.rand(1, 1, 28, 28)).shape == (1, split.num_classes)
    for part in (datamodule.train_set, datamodule.val_set, datamodule.test_set):
        assert torch.bincount(part.labels, minlength=split.num_classes).min() > 0
        assert int(part.labels.max()) == split.num_classes - 1


@needs_stand_ins
@pytest.mark.real_data
def test_letters_stand_in_label_1_is_a_and_26_is_z() -> None:
    """An image labelled 1 in the official-format files is class 'A/a'; one labelled 26 is 'Z/z'."""
    datamodule = synthetic_datamodule(DATA_DIR, split="letters")
    datamodule.setup("test")
    in_files = idx.read_labels(find_file(Path(DATA_DIR), LETTERS.file_names("test")[1]))
    first_a, first_z = int(np.flatnonzero(in_files == 1)[0]), int(np.flatnonzero(in_files == 26)[0])
    names = [datamodule.classes[int(datamodule.test_set.labels[i])] for i in (first_a, first_z)]
    assert names == ["A/a", "Z/z"] and len(np.unique(in_files)) == 26
