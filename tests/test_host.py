"""Process-wide settings of a run: the allocator, threads, and which progress bar the trainer gets."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import RichProgressBar

from emnist_lightning.runs import host
from emnist_lightning.runs.build import build_entries, build_trainer
from emnist_lightning.runs.config import compose

REFAULT = """
import resource, sys, torch
from emnist_lightning.runs import host
if sys.argv[1] == "keep":
    assert host.keep_freed_memory()
faults = []
for _ in range(6):  # like training steps: the same 64 MB buffer, allocated and freed again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20).sum().item()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[3:]))  # the heap settles within two steps, as after a training run's warm-up
"""


def page_faults_once_settled(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", REFAULT, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's")
def test_kept_memory_is_reused_without_page_faults() -> None:
    # By default glibc unmaps the freed 64 MB, and each next buffer faults in all 16k pages again.
    assert page_faults_once_settled("default") > 10_000
    assert page_faults_once_settled("keep") < 1_000


def test_host_settings_follow_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(host, "keep_freed_memory", lambda: calls.append("kept"))
    monkeypatch.setattr(host.torch, "set_num_threads", lambda n: calls.append(n))
    host.configure_host(compose("train", ["num_threads=3"], tmp_path))
    host.configure_host(compose("train", ["reuse_freed_memory=false"], tmp_path))
    assert calls == [3, "kept"]


@pytest.mark.parametrize(("override", "bar"), [([], RichProgressBar), (["callbacks.progress_bar=null"], type(None))])
def test_callbacks_group_alone_decides_the_progress_bar(tmp_path: Path, override: list[str], bar: type) -> None:
    cfg = compose("train", override, tmp_path)
    trainer = build_trainer(cfg, build_entries(cfg.callbacks))
    assert type(trainer.progress_bar_callback) is bar
