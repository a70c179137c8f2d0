"""Where figures go: PNG files in a folder and images in the run's trackers (TensorBoard, MLflow, W&B)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from emnist_lightning.pictures import plots

# (tag, (H, W, 3) uint8 pixels, step): hands one picture to one tracker
ImageWriter = Callable[[str, np.ndarray, int], None]


def tensorboard_images(writer: SummaryWriter) -> ImageWriter:
    return lambda tag, pixels, step: writer.add_image(tag, pixels, step, dataformats="HWC")


@dataclass(frozen=True)
class FigureJob:
    """One picture: `draw(*args, **kwargs)`, a function of plots, written as a PNG to `path` and shown in
    the trackers under `tag`."""

    draw: Callable[..., Figure]
    path: Path
    tag: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FigureSink:
    """PNGs in `output_dir` and images handed to `writers`, at step `step`; `seconds` is how long each file
    took to draw and write, by name."""

    output_dir: Path
    writers: Sequence[ImageWriter] = ()
    step: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def job(self, name: str, tag: str, draw: Callable[..., Figure], *args: Any, **kwargs: Any) -> FigureJob:
        """The picture file `name` (TensorBoard tag `tag`) drawn by `draw(*args, **kwargs)`, a function of plots."""
        return FigureJob(draw, self.output_dir / name, tag, args, kwargs)

    def publish(self, jobs: Sequence[FigureJob]) -> list[Path]:
        """Draw and write every job; returns their files."""
        for job in jobs:
            started = time.perf_counter()
            pixels = plots.save_figure(job.draw(*job.args, **job.kwargs), job.path)
            for writer in self.writers:
                writer(job.tag, pixels, self.step)
            self.seconds[job.path.name] = round(time.perf_counter() - started, 3)
        return [job.path for job in jobs]
