"""Where a run's figures go: PNG files in a folder and images in TensorBoard, drawn here and by the
helper process (painter.py) side by side."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from emnist_lightning.pictures.painter import FigureJob, Rendered, shared_painter
from emnist_lightning.runs import timing


@dataclass
class FigureSink:
    """PNGs in `output_dir` and images in `writers`, at TensorBoard step `step`."""

    output_dir: Path
    writers: Sequence[SummaryWriter] = ()
    step: int = 0

    def job(self, name: str, tag: str, draw: Callable[..., Figure], *args: Any, **kwargs: Any) -> FigureJob:
        """The picture file `name` (TensorBoard tag `tag`) drawn by `draw(*args, **kwargs)`, a function of plots."""
        return FigureJob(draw, self.output_dir / name, tag, args, kwargs)

    def publish(self, jobs: Sequence[FigureJob]) -> list[Path]:
        """Draw and write every job; returns their files. With a helper process, this process and the
        helper each take the next job in turn, so the longest should come first (the helper is only handed
        one when this process finishes one)."""
        pending = deque(jobs)
        painter = shared_painter() if len(pending) > 1 else None
        while pending or (painter and painter.in_flight):
            if painter and painter.alive and painter.in_flight is None and len(pending) > 1:
                painter.submit(pending.popleft())
            if painter and (painter.ready() or not pending):
                self.show(painter.result())
            elif pending:
                self.show(pending.popleft().run())
        return [job.path for job in jobs]

    def show(self, rendered: Rendered) -> None:
        """Put a written picture into TensorBoard (the PNG as encoded for the file) and time it."""
        image = Summary.Image(
            height=rendered.png.height, width=rendered.png.width, colorspace=3, encoded_image_string=rendered.png.data
        )
        summary = Summary(value=[Summary.Value(tag=rendered.tag, image=image)])
        for writer in self.writers:
            # what SummaryWriter.add_image does after encoding: add_image would encode the pixels again
            writer._get_file_writer().add_summary(summary, self.step)
        timing.pictures[rendered.path.name] = round(rendered.seconds, 3)
