"""Process-wide settings of a run: threads, the cycle collector, and which progress bar the trainer gets."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import RichProgressBar

from emnist_lightning.runs import host
from emnist_lightning.runs.config import compose
from emnist_lightning.training.build import build_entries, build_trainer


def test_host_settings_follow_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(host.torch, "set_num_threads", lambda n: calls.append(n))
    host.configure_host(compose("train", ["num_threads=3"], tmp_path))
    host.configure_host(compose("train", [], tmp_path))
    assert calls == [3]


def test_later_jobs_of_a_process_freeze_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's second job must not freeze what the first left behind: its garbage would never be freed."""
    calls = []
    monkeypatch.setattr(host.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(host.gc, "get_freeze_count", lambda: len(calls))
    host.freeze_long_lived_objects(once=True)
    host.freeze_long_lived_objects(once=True)
    assert calls == ["freeze"]
    host.freeze_long_lived_objects(once=False)  # at exit
    assert calls == ["freeze", "freeze"]
    assert gc.isenabled()


@pytest.mark.parametrize(("override", "bar"), [([], RichProgressBar), (["callbacks.progress_bar=null"], type(None))])
def test_callbacks_group_alone_decides_the_progress_bar(tmp_path: Path, override: list[str], bar: type) -> None:
    cfg = compose("train", override, tmp_path)
    trainer = build_trainer(cfg, build_entries(cfg.callbacks))
    assert type(trainer.progress_bar_callback) is bar
