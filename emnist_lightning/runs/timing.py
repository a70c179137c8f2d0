"""Where a run's wall time goes, for metrics.json and the whole-run benchmark.

`laps` are consecutive stretches of train.py's run (building the objects, loading the data, training,
the best checkpoint's validation and test passes); `pictures` are the seconds each figure took, by file
(pictures/test_report.py: FigureSink).
One run per process at a time: `start` clears both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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


def process_started_at() -> float | None:
    """When this process started, as Unix time, from /proc (to 10 ms); None where there is no /proc."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    except (OSError, StopIteration):
        return None
    return int(boot.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
