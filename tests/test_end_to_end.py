"""train.py and evaluate.py run as a user runs them, on the synthetic dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from emnist_lightning.analysis.predictions import PREDICTIONS_FILE, HeldOutPredictions
from emnist_lightning.runs.host import cpu_has_native_bf16, resolved_precision
from tests.conftest import BALANCED, run_entry_point

pytestmark = pytest.mark.slow

TINY = {
    "mlp": ["model=mlp", "model.hidden_dims=[64,32,32]"],
    "cnn": ["model=cnn", "model.channels=[8,16]", "model.head_dims=[32]", "optimizer.lr=0.003"],
}


def train(run_dir: Path, data_dir: Path, *overrides: str):
    return run_entry_point(
        "train.py",
        f"data.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=3",
        "data.batch_size=64",
        "callbacks.progress_bar=null",
        *overrides,
    )


def read_scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def trained(request: pytest.FixtureRequest, synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    result = train(run_dir, synthetic_dir, *TINY[request.param])
    assert result.returncode == 0, result.stderr[-3000:]
    return request.param, run_dir


def test_run_writes_checkpoints_metrics_and_pictures(trained) -> None:
    family, run_dir = trained
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    for picture in ("confusion_matrix.png", "test_predictions.png"):
        assert (run_dir / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["choices"]["model"] == family
    assert metrics["epochs"] == 3 and len(metrics["history"]["val/acc"]) == 3
    for key in ("val_acc", "val_macro_acc", "val_loss", "test_acc", "test_macro_acc", "test_loss"):
        assert 0.0 <= metrics[key] < 10.0, key
    assert metrics["test_acc"] > 10 / 47, "ten times chance: the model learned"
    assert metrics["params"] > 1000
    # temperature scaling: fitted on validation, it can only lower the validation NLL; kept in the checkpoint
    assert metrics["val_loss_calibrated"] <= metrics["val_loss"] + 1e-6
    assert torch.load(metrics["best_checkpoint"], weights_only=True)["temperature"] == metrics["temperature"]
    assert 0 <= metrics["test_ece_calibrated"] < 1 and metrics["test_loss_calibrated"] > 0


def test_run_records_how_it_was_made_and_how_sure_it_is(trained) -> None:
    """metrics.json: 95% intervals around the test accuracies, the code, versions, data, hardware and
    command; test_predictions.npz beside it holds every test image's prediction, which give the accuracy."""
    _, run_dir = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_acc", "test_macro_acc"):
        low, high = metrics[f"{key}_ci"]
        assert low < metrics[key] < high and high - low < 0.3, key
    made = metrics["provenance"]
    assert set(made["versions"]) >= {"torch", "lightning", "torchmetrics", "hydra-core", "python"}
    assert sorted(made["data_files"]) == sorted(f"{name}.gz" for name in BALANCED.required_files)
    assert made["precision"] == resolved_precision("auto", "cpu"), "trainer.precision=auto, as resolved here"
    assert made["num_threads"] >= 1 and made["cpu_native_bf16"] == cpu_has_native_bf16()
    assert "hydra.run.dir=" + str(run_dir) in " ".join(made["command"]) and len(made.get("git_commit", "x" * 40)) == 40
    kept = HeldOutPredictions.load(run_dir)
    assert len(kept.labels) == 47 * 6 and kept.accuracy == pytest.approx(metrics["test_acc"])


def test_run_logs_to_tensorboard(trained) -> None:
    _, run_dir = trained
    scalars = read_scalars(run_dir)
    for tag in ("train/loss_step", "val/acc", "val/loss", "test/acc", "test/macro_acc", "lr-Adam", "hparams/test_acc"):
        assert tag in scalars, tag
    assert len(scalars["val/acc"]) >= 3


def assert_eval_reproduces(checkpoint: Path, recorded: Path, data_dir: Path, run_dir: Path, *overrides: str) -> None:
    """evaluate.py on `checkpoint` gives the test accuracy and loss of the metrics.json at `recorded`."""
    result = run_entry_point(
        "evaluate.py",
        f"ckpt_path={checkpoint}",
        f"data.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "callbacks.progress_bar=null",
        *overrides,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((run_dir / "metrics.json").read_text())
    expected = json.loads(recorded.read_text())
    assert evaluated["test_acc"] == pytest.approx(expected["test_acc"])
    assert evaluated["test_loss"] == pytest.approx(expected["test_loss"], rel=1e-5)
    if (recorded.parent / PREDICTIONS_FILE).is_file():
        assert np.array_equal(
            HeldOutPredictions.load(run_dir).predictions, HeldOutPredictions.load(recorded.parent).predictions
        )


def test_eval_reproduces_test_metrics(trained, synthetic_dir: Path, tmp_path: Path) -> None:
    _, run_dir = trained
    assert_eval_reproduces(run_dir / "checkpoints" / "best.ckpt", run_dir / "metrics.json", synthetic_dir, tmp_path)
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_a_runs_test_with_test_time_shifts_is_evaluate_pys(synthetic_dir: Path, tmp_path: Path) -> None:
    """train.py test_time_shift=1 tests on the mean of five views, as evaluate.py test_time_shift=1 does;
    evaluate.py without shifts gives another loss."""
    run_dir = tmp_path / "run"
    result = train(run_dir, synthetic_dir, *TINY["cnn"], "trainer.max_epochs=1", "test_time_shift=1")
    assert result.returncode == 0, result.stderr[-3000:]
    best, recorded = run_dir / "checkpoints" / "best.ckpt", run_dir / "metrics.json"
    assert_eval_reproduces(best, recorded, synthetic_dir, tmp_path / "shifted", "test_time_shift=1")
    with pytest.raises(AssertionError):
        assert_eval_reproduces(best, recorded, synthetic_dir, tmp_path / "unshifted")


def test_same_seed_same_metrics(synthetic_dir: Path, tmp_path: Path) -> None:
    results = []
    for name in ("first", "second"):
        result = train(tmp_path / name, synthetic_dir, *TINY["mlp"], "trainer.max_epochs=2", "logger=csv")
        assert result.returncode == 0, result.stderr[-3000:]
        results.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    for key in ("val_acc", "val_loss", "test_acc", "test_loss"):
        assert results[0][key] == results[1][key], key


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in last


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    result = train(tmp_path / "run", tmp_path / "empty", "data.download=false")
    assert_one_line_error(result, "EMNIST Balanced files not found", "data.data_dir")


def test_corrupt_data_is_one_clear_line(fresh_synthetic_dir: Path, tmp_path: Path) -> None:
    images = fresh_synthetic_dir / "emnist-balanced-train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:200])
    result = train(tmp_path / "run", fresh_synthetic_dir)
    assert_one_line_error(result, "emnist-balanced-train-images-idx3-ubyte.gz", "download it again")


def test_bad_config_value_is_one_clear_line(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train(tmp_path / "run", synthetic_dir, "model.hidden_dims=[32,32]")
    assert_one_line_error(result, "at least 3")


def test_bad_checkpoint_is_one_clear_line(synthetic_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "broken.ckpt"
    checkpoint.write_text("garbage")
    result = run_entry_point(
        "evaluate.py", f"ckpt_path={checkpoint}", f"data.data_dir={synthetic_dir}", f"hydra.run.dir={tmp_path / 'e'}"
    )
    assert_one_line_error(result, "broken.ckpt", "cannot be read")
    assert checkpoint.read_text() == "garbage"


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["optimizer.lr=-0.1"], ["optimizer: Invalid learning rate: -0.1", "optimizer.* keys"]),
        (["+optimizer.lrr=0.1"], ["optimizer:", "unexpected keyword argument 'lrr'"]),
        (["+optimizer.foreach=true"], ["optimizer: `fused` and `foreach` cannot be `True` together", "optimizer.*"]),
        (["model=cnn", "model.channels=[8,8,8,8,8,8]"], ["do not fit a 28x28 input", "fewer pooling layers"]),
        (["trainer.max_epochs=0"], ["trainer.max_epochs=0 trains nothing"]),
        (["test_time_shift=3"], ["test_time_shift=3 must be a whole number of pixels from 0 (off) to 2"]),
    ],
    ids=[
        "negative-lr",
        "unknown-optimizer-key",
        "fused-and-foreach",
        "too-many-pools-with-batch-norm",
        "zero-epochs",
        "test-time-shift",
    ],
)
def test_bad_values_are_one_clear_line(synthetic_dir: Path, tmp_path: Path, overrides: list, fragments: list) -> None:
    assert_one_line_error(train(tmp_path / "run", synthetic_dir, *overrides), *fragments)


def test_a_corrupt_test_file_stops_the_run_before_training(fresh_synthetic_dir: Path, tmp_path: Path) -> None:
    images = fresh_synthetic_dir / "emnist-balanced-test-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:300])
    result = train(tmp_path / "run", fresh_synthetic_dir)
    assert_one_line_error(result, "emnist-balanced-test-images-idx3-ubyte.gz")
    assert not (tmp_path / "run" / "checkpoints").exists(), "it trained before finding the bad file"


def test_a_finished_run_is_never_overwritten(trained, synthetic_dir: Path) -> None:
    _, run_dir = trained
    kept = {path: path.read_bytes() for path in (run_dir / "metrics.json", run_dir / ".hydra" / "overrides.yaml")}
    result = train(run_dir, synthetic_dir, "optimizer=sgd")
    assert_one_line_error(result, "holds a completed run", "overwrite=true")
    assert all(path.read_bytes() == content for path, content in kept.items())


def test_outputs_that_cannot_be_written_are_one_clear_line(synthetic_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = run_entry_point(
        "train.py", f"data.data_dir={synthetic_dir}", f"paths.log_dir={tmp_path / 'a-file' / 'out'}"
    )
    assert_one_line_error(result, "is a file, not a folder")
    if not os.access("/proc/1", os.W_OK):  # a read-only place even for root
        result = run_entry_point("train.py", f"data.data_dir={synthetic_dir}", "paths.log_dir=/proc/1/outputs")
        assert_one_line_error(result, "'/proc/1' is not writable", "paths.log_dir")


def test_a_sweep_whose_jobs_all_fail_exits_non_zero(synthetic_dir: Path, tmp_path: Path) -> None:
    result = run_entry_point(
        "train.py", "-m", f"data.data_dir={synthetic_dir}", f"hydra.sweep.dir={tmp_path}",
        "model.hidden_dims=[32,32],[16,16]", "callbacks.progress_bar=null",
    )  # fmt: skip
    assert result.returncode == 1
    assert "all 2 jobs of the sweep" in result.stderr.strip().splitlines()[-1]


def test_early_stopping_records_why(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train(
        tmp_path / "run", synthetic_dir, *TINY["mlp"], "trainer.max_epochs=30", "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] < 30 and "val/acc" in metrics["stopped_early"]


def test_fast_dev_run_is_recorded_as_what_it_is(synthetic_dir: Path, tmp_path: Path) -> None:
    result = train(
        tmp_path / "run", synthetic_dir, *TINY["mlp"], "trainer.limit_train_batches=10", "trainer.fast_dev_run=true"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "fast_dev_run"


def test_record_keeps_every_epoch_when_the_best_came_first(synthetic_dir: Path, tmp_path: Path) -> None:
    """Validating and testing the best checkpoint restore its callback states, which end at its epoch:
    metrics.json still holds every epoch's history and times, and where the run's time went."""
    run_dir = tmp_path / "run"
    result = train(run_dir, synthetic_dir, *TINY["mlp"], "callbacks.model_checkpoint.mode=min")  # best: epoch 0
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 0
    assert len(metrics["history"]["val/acc"]) == 3
    assert [len(metrics["seconds"][pass_]) for pass_ in ("train_epoch", "val_epoch", "test")] == [3, 3, 1]
    laps = {"build", "data", "before training", "training epochs", "after training", "validate best", "test best"}
    assert laps <= set(metrics["laps"])
    assert {"dataset_samples.png", "confusion_matrix.png", "reliability.png"} <= set(metrics["pictures"])
