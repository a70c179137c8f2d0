"""Where a run's wall time goes, for metrics.json and the whole-run benchmark.

`laps` are consecutive stretches of train.py's run (building the objects, loading the data, training,
the best checkpoint's validation and test passes); `pictures` are the seconds each figure took, by file
(pictures/sink.py: FigureSink): where a picture was drawn, by the run or its helper process.
One run per process at a time: `start` clears both.
"""

from __future__ import annotations

import time

laps: dict[str, float] = {}
pictures: dict[str, float] = {}
_lap_started = time.perf_counter()


def start() -> None:
    global _lap_started
    laps.clear()
    pictures.clear()
    _lap_started = time.perf_counter()


def lap(name: str) -> None:
    """Close the current lap as `name` (laps of one name add up) and start the next."""
    global _lap_started
    now = time.perf_counter()
    laps[name] = round(laps.get(name, 0.0) + now - _lap_started, 3)
    _lap_started = now
