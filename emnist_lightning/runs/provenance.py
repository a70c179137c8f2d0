"""How a run was made, for metrics.json: code, library versions, data, hardware and command line, so that
a report can say when the runs it compares differ in more than their configs."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from emnist_lightning.runs.host import cpu_has_native_bf16, cpu_model

PACKAGE_DIR = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "lightning", "torchmetrics", "hydra-core", "numpy")
# What must agree between two runs for their difference to be the configs' alone.
COMPARED_KEYS = ("git_commit", "git_dirty", "versions", "data_files")


@functools.cache  # once a process: a long sweep's jobs run the code it loaded, however the checkout moves on
def git_state(folder: Path = PACKAGE_DIR.parent) -> dict[str, Any]:
    """The commit of the checkout the package runs from, and whether its tracked files were changed, as
    first asked in this process (entry points ask at their start); empty for an installed wheel or where
    git is missing."""
    if not (folder / ".git").exists():
        return {}
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(changes.strip())}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def hardware() -> dict[str, Any]:
    found: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
    return found


def sha256_of_files(paths: Iterable[Path]) -> dict[str, str]:
    digests = {}
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        digests[path.name] = digest.hexdigest()
    return digests


def provenance(data_files: Iterable[Path], precision: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Everything metrics.json records of how the run was made."""
    return {
        **git_state(),
        "versions": versions(),
        "data_files": sha256_of_files(data_files),
        **hardware(),
        "precision": precision,
        "num_threads": torch.get_num_threads(),
        "command": list(sys.argv if argv is None else argv),
    }


def differences(records: dict[str, dict[str, Any]]) -> list[str]:
    """One line per COMPARED_KEYS entry on which the runs (name -> provenance) disagree."""
    lines = []
    for key in COMPARED_KEYS:
        values = {name: record.get(key) for name, record in records.items()}
        distinct = {repr(value) for value in values.values()}
        if len(distinct) > 1:
            shown = ", ".join(f"{name}: {value}" for name, value in list(values.items())[:4])
            lines.append(f"the runs differ in {key} ({shown}{', ...' if len(values) > 4 else ''})")
    return lines
