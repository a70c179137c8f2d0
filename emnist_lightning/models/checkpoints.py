"""Reading checkpoints safely and rebuilding the classifier they hold.

Every checkpoint is read with `torch.load(weights_only=True)`: tensors, numbers, strings and containers
only, so a crafted file cannot run code when it is opened. Lightning's own loading
(`trainer.fit/test(ckpt_path=...)`) is called with `weights_only=True` too. Checkpoints of emnist-lightning
0.1.0 and later load; nothing older exists outside this repository's history.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from emnist_lightning.errors import CheckpointError
from emnist_lightning.models.classifier import EMNISTClassifier

# What every checkpoint of train.py names beside its weights: its network and the classes it reads.
REQUIRED_ARGUMENTS = ("network", "split", "classes")


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's content, read without running any code it may carry; with `mmap`, its tensors are
    mapped from the file rather than read, for a look at its other entries."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; pass ckpt_path= a .ckpt file written by train.py")
    try:
        # torch maps only its zip format; anything else is read (and checked) whole
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(err))
        if blocked is None:
            raise CheckpointError(
                f"checkpoint '{path}' cannot be read (not plain checkpoint data); it is corrupt or not a checkpoint"
            ) from err
        raise CheckpointError(
            f"checkpoint '{path}' holds code or objects other than weights ({blocked.group(1)}), which would run "
            "when loaded; it was not written by emnist_lightning, so it is refused"
        ) from err
    except Exception as err:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({type(err).__name__}); it is corrupt or not a checkpoint"
        ) from err


def classifier_arguments(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The EMNISTClassifier arguments a checkpoint was written with."""
    arguments = dict(checkpoint.get("hyper_parameters") or {})
    if any(key not in arguments for key in REQUIRED_ARGUMENTS) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"checkpoint '{path}' was not written by emnist_lightning's train.py; it cannot be used here"
        )
    return arguments


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> EMNISTClassifier:
    """Rebuild the classifier a checkpoint holds, with its trained weights; one clear error otherwise."""
    return classifier_of_checkpoint(read_checkpoint(path), path).to(map_location)


def classifier_of_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> EMNISTClassifier:
    """The classifier in a checkpoint already read by `read_checkpoint` (`path` names it in errors)."""
    arguments = classifier_arguments(checkpoint, path)
    try:
        model = EMNISTClassifier(**arguments)
        model.load_state_dict(checkpoint["state_dict"])
        model.on_load_checkpoint(checkpoint)  # what Lightning's loading would restore beside the weights
    except (RuntimeError, TypeError, KeyError, ValueError) as err:  # ConfigError is a ValueError
        # load_state_dict's message opens with a header line; the first mismatch after it says why
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
        raise CheckpointError(f"checkpoint '{path}' does not fit an EMNISTClassifier: {reason}") from err
    return model
