"""Ensembles (evaluate.py, predict.py and export with several checkpoints) and distillation from a teacher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from emnist_lightning.analysis.predictions import HeldOutPredictions
from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.export import export
from emnist_lightning.inference.models import load_pixel_model, open_predictor
from emnist_lightning.models import load_classifier
from emnist_lightning.models.distillation import DistilledLoss
from emnist_lightning.models.losses import Targets
from tests.conftest import run_entry_point, train_synthetic_checkpoint


@pytest.fixture(scope="module")
def three_checkpoints(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("members")
    return [train_synthetic_checkpoint(synthetic_dir, folder / f"seed{seed}", seed=seed) for seed in (1, 2, 3)]


def as_list(paths: list[Path]) -> str:
    return "[" + ",".join(str(path) for path in paths) + "]"


def test_an_ensembles_probabilities_are_the_mean_of_its_members(three_checkpoints: list[Path], tmp_path: Path) -> None:
    pixels = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    members = [open_predictor(path).logits(pixels).softmax(dim=1) for path in three_checkpoints]
    ensemble = open_predictor(three_checkpoints)
    assert ensemble.classes == open_predictor(three_checkpoints[0]).classes
    assert torch.allclose(ensemble.logits(pixels).softmax(dim=1), torch.stack(members).mean(dim=0), atol=1e-6)
    _, difference = export(three_checkpoints, "torchscript", tmp_path, seed=0)
    assert difference < 1e-4, "the exported ensemble is one graph computing the same mean"
    assert len(json.loads((tmp_path / "model.json").read_text())["temperature"]) == 3


def test_models_of_different_splits_make_no_ensemble(synthetic_checkpoint: Path, digits_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="name different classes .* one EMNIST split"):
        load_pixel_model([synthetic_checkpoint, digits_checkpoint])


@pytest.mark.slow
def test_evaluate_reports_the_ensemble_beside_its_members(
    three_checkpoints: list[Path], synthetic_dir: Path, tmp_path: Path
) -> None:
    result = run_entry_point(
        "evaluate.py",
        f"ckpt_path={as_list(three_checkpoints)}",
        f"data.data_dir={synthetic_dir}",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [member["checkpoint"] for member in metrics["members"]] == [str(path) for path in three_checkpoints]
    for record in (metrics, *metrics["members"]):
        low, high = record["test_acc_ci"]
        assert low <= record["test_acc"] <= high
    kept = HeldOutPredictions.load(tmp_path)
    assert kept.accuracy == pytest.approx(metrics["test_acc"])
    comparison = metrics["ensemble_vs_best_member"]
    assert comparison["test"] == "McNemar exact" and 0 <= comparison["p_value"] <= 1
    assert comparison["interval"][0] <= comparison["difference"] <= comparison["interval"][1]
    log = (tmp_path / "evaluate.log").read_text()
    assert log.count("member ") == 3 and "ensemble of 3:" in log


def test_the_soft_loss_vanishes_when_the_student_matches_the_teacher() -> None:
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5))
    data = SimpleNamespace(mean=0.0, std=1.0)
    distillation = DistilledLoss(teacher, temperature=3.0, weight=0.5, label_smoothing=0.0, class_balanced=False)
    distillation.prepare(torch.device("cpu"), data)
    images, labels = torch.rand(8, 1, 28, 28), torch.randint(5, (8,))
    same = teacher(images)
    assert float(distillation.soft_loss(same, images)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation.soft_loss(torch.zeros_like(same), images)) > 0
    labels_only = DistilledLoss(teacher, temperature=4.0, weight=0.0, label_smoothing=0.0, class_balanced=False)
    labels_only.prepare(torch.device("cpu"), data)
    hard = torch.nn.functional.cross_entropy(same, labels)
    assert float(labels_only(same, Targets(labels), images)) == pytest.approx(float(hard))
    with pytest.raises(ConfigError, match="temperature=0"):
        DistilledLoss(teacher, temperature=0, weight=0.5, label_smoothing=0.0, class_balanced=False)


STUDENT = ["model=mlp", "model.hidden_dims=[32,32,32]", "trainer.max_epochs=1", "callbacks=no_pictures"]


@pytest.mark.slow
def test_a_distilled_student_trains_and_loads_without_its_teacher(
    synthetic_checkpoint: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    teacher = tmp_path / "teacher.ckpt"
    shutil.copy(synthetic_checkpoint, teacher)
    run_dir = tmp_path / "student"
    result = run_entry_point(
        "train.py",
        *STUDENT,
        "loss=distilled",
        f"loss.teacher={teacher}",
        f"data.data_dir={synthetic_dir}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["choices"]["loss"] == "distilled" and metrics["test_acc"] > 0
    teacher.unlink()
    student = load_classifier(metrics["best_checkpoint"])
    assert "loss" not in student.hparams and "teacher" not in student.hparams
    checkpoint = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert not any(key.startswith("distillation") for key in checkpoint["state_dict"]), "no teacher weights"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        (None, "error: loss=distilled needs loss.teacher="),
        ("digits", "error: the teacher names 10 classes of EMNIST digits, the data 47 of balanced"),
    ],
)
def test_a_missing_or_foreign_teacher_is_one_line(
    digits_checkpoint: Path, synthetic_dir: Path, tmp_path: Path, teacher: str | None, message: str
) -> None:
    given = [] if teacher is None else [f"loss.teacher={digits_checkpoint}"]
    result = run_entry_point(
        "train.py", *STUDENT, "loss=distilled", *given, f"data.data_dir={synthetic_dir}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
