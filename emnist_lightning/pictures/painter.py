"""A helper process that draws figures while the run's own process draws others.

Matplotlib holds Python's lock while it lays out and renders a figure, so threads cannot share the
work; a second process can, on a core that sits idle while the run draws. `shared_painter()` starts
one helper per process, early in a run (when its callbacks are built: callbacks.warm_up_painter), so
that its imports (plotting only: no torch or Lightning) overlap the run's own set-up rather than its
training. `FigureSink.publish` (sink.py) then hands it one job at a time while drawing others itself.
Where the helper cannot help (one CPU, no POSIX pipes) or stops answering, the run draws everything
itself, as it would without it.

    python -m emnist_lightning.pictures.painter   # the helper's side, started by Painter
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from matplotlib.figure import Figure

from emnist_lightning.pictures import plots

log = logging.getLogger(__name__)
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder that holds emnist_lightning/


@dataclass(frozen=True)
class FigureJob:
    """One picture: `draw(*args, **kwargs)`, a module-level function (pickled by name, so the helper
    imports it), written as a PNG to `path` and shown in TensorBoard under `tag`."""

    draw: Callable[..., Figure]
    path: Path
    tag: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Rendered:
        started = time.perf_counter()
        png = plots.save_figure(self.draw(*self.args, **self.kwargs), self.path)
        return Rendered(self.path, self.tag, png, time.perf_counter() - started)


@dataclass(frozen=True)
class Rendered:
    """A job's outcome: its file, tag, PNG and the seconds it took to draw and write."""

    path: Path
    tag: str
    png: plots.Png
    seconds: float


def send(message: object, channel: IO[bytes]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)  # whole first: a failure writes nothing
    channel.write(data)
    channel.flush()


class Painter:
    """The run's side of the helper: one job in flight at a time, so neither side ever blocks writing
    to a full pipe while the other is writing too."""

    def __init__(self) -> None:
        environment = os.environ | {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")]))
        }
        self.process: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment
        )
        self.in_flight: FigureJob | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None

    def submit(self, job: FigureJob) -> None:
        self.in_flight = job
        try:
            send(job, self.process.stdin)
        except OSError as err:  # the helper has exited; `result` draws the job here
            self.stop(f"it exited ({err})")

    def ready(self) -> bool:
        """True when `result` would not wait: the answer has arrived, or the job will be drawn here."""
        return self.in_flight is not None and (
            not self.alive or bool(select.select([self.process.stdout], [], [], 0)[0])
        )

    def result(self) -> Rendered:
        """The job in flight, drawn by the helper, or here if the helper could not draw it."""
        job, self.in_flight = self.in_flight, None
        if self.alive:
            try:
                answer = pickle.load(self.process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as err:
                self.stop(f"it stopped answering ({type(err).__name__})")
            else:
                if isinstance(answer, Rendered):
                    return answer
                log.warning("the picture helper could not draw %s; drawing it here. Its error:\n%s", job.path, answer)
        return job.run()

    def stop(self, why: str = "") -> None:
        if why:
            log.warning("the picture helper process is gone, %s; the run draws its pictures itself", why)
        process, self.process = self.process, None
        if process is None:
            return
        with suppress(OSError):  # a helper that died leaves a broken pipe
            process.stdin.close()  # the helper ends at the end of its input
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


_painter: Painter | None = None
_cannot_start = False


def shared_painter() -> Painter | None:
    """This process's helper, started on the first call; None where a second process cannot help."""
    global _painter, _cannot_start
    if _painter is None and not _cannot_start and os.name == "posix" and usable_cpus() > 1:
        try:
            _painter = Painter()
        except OSError as err:
            _cannot_start = True  # said once, not at every picture
            log.warning("no picture helper process (%s); the run draws its pictures itself", err)
            return None
        atexit.register(_painter.stop)
    return _painter if _painter is not None and _painter.alive else None


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def serve(jobs: IO[bytes], answers: IO[bytes]) -> None:
    """The helper's loop: draw each job read from `jobs`, answer with its `Rendered` or the error's text."""
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:  # the run has finished (or died): nothing to clean up, so skip the teardown
            answers.close()
            os._exit(0)
        try:
            answer: Rendered | str = job.run()
        except Exception:
            answer = traceback.format_exc()
        send(answer, answers)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the run, which ends the helper's input
    # Answers go through a private copy of stdout; anything a library prints goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)
