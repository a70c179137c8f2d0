"""The picture helper process: the same pictures as drawn in the run's process, and a run that draws
them itself when the helper cannot."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from emnist_lightning.data import BALANCED_CLASSES
from emnist_lightning.pictures import painter, plots
from emnist_lightning.pictures.sink import FigureSink

CONFUSION = np.random.default_rng(0).integers(0, 30, (47, 47))


def jobs(sink: FigureSink, count: int = 4) -> list[painter.FigureJob]:
    draw = plots.confusion_matrix_figure
    return [
        sink.job(f"picture_{n}.png", f"test/picture_{n}", draw, CONFUSION + n, list(BALANCED_CLASSES), title=str(n))
        for n in range(count)
    ]


def helper() -> painter.Painter:
    running = painter.shared_painter()
    assert running is not None, "these tests need a machine with two CPUs"
    return running


def test_the_helper_draws_the_same_pictures_as_this_process(tmp_path: Path) -> None:
    shared = FigureSink(tmp_path / "shared")
    drawn_here = [job.run().png.data for job in jobs(FigureSink(tmp_path / "here"))]
    helper()  # running, so publish shares the jobs
    paths = shared.publish(jobs(shared))
    assert [path.name for path in paths] == [f"picture_{n}.png" for n in range(4)]
    assert [path.read_bytes() for path in paths] == drawn_here


def test_pictures_reach_tensorboard_as_written(tmp_path: Path) -> None:
    with SummaryWriter(str(tmp_path / "tensorboard")) as writer:
        paths = FigureSink(tmp_path, [writer], step=3).publish(jobs(FigureSink(tmp_path)))
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    for n, path in enumerate(paths):
        (image,) = events.Images(f"test/picture_{n}")
        assert image.step == 3 and image.encoded_image_string == path.read_bytes()


def test_a_dead_helper_leaves_the_drawing_to_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    helper().process.kill()
    helper_was = painter._painter
    sink = FigureSink(tmp_path)
    with caplog.at_level(logging.WARNING):
        paths = sink.publish(jobs(sink))
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in paths)
    assert "the picture helper process is gone" in caplog.text
    assert not helper_was.alive and painter.shared_painter() is None
    painter._painter = None  # the next test starts a new one


def test_a_picture_that_cannot_be_drawn_fails_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    helper()
    sink = FigureSink(tmp_path)
    broken = sink.job("broken.png", "test/broken", plots.confusion_matrix_figure, None, [])
    with caplog.at_level(logging.WARNING), pytest.raises(AttributeError):
        sink.publish([broken, *jobs(sink, 2)])  # the helper takes the first job; drawn again here, it fails
    assert "could not draw" in caplog.text and "AttributeError" in caplog.text
    assert helper().alive, "a failed picture does not end the helper"
    assert not (tmp_path / "broken.png").exists()


def test_no_helper_on_one_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(painter, "_painter", None)
    monkeypatch.setattr(painter, "usable_cpus", lambda: 1)
    assert painter.shared_painter() is None
    sink = FigureSink(tmp_path)
    assert all(path.is_file() for path in sink.publish(jobs(sink, 2)))


def test_a_helper_that_cannot_start_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(painter, "_painter", None)
    monkeypatch.setattr(painter, "_cannot_start", False)

    def no_process() -> painter.Painter:
        raise OSError("no processes left")

    monkeypatch.setattr(painter, "Painter", no_process)
    sink = FigureSink(tmp_path)
    with caplog.at_level(logging.WARNING):
        first, second = sink.publish(jobs(sink, 2)), sink.publish(jobs(sink, 2))
    assert all(path.is_file() for path in first + second)
    assert caplog.text.count("no picture helper process (no processes left)") == 1
