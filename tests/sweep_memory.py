"""Run `train.py -m <overrides>` in this process, as the basic launcher runs a sweep, and print as JSON how
many earlier jobs' models were still alive (after a full collection) as each job built its own."""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any

from emnist_lightning.cli import train
from emnist_lightning.training import build

models: list[weakref.ref[Any]] = []
alive_at_start: list[int] = []
build_model = build.build_model


def build_and_watch(cfg: Any, datamodule: Any) -> Any:
    gc.collect()
    alive_at_start.append(sum(model() is not None for model in models))
    model = build_model(cfg, datamodule)
    models.append(weakref.ref(model))
    return model


if __name__ == "__main__":
    build.build_model = build_and_watch
    try:
        train.main()
    finally:
        print(json.dumps({"alive_at_start": alive_at_start}))
