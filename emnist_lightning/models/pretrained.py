"""Trained models by name: `ckpt_path=pretrained:balanced` (or `:letters`, `:digits`, ...) wherever a
checkpoint is taken (evaluate, predict, export, the drawing page, a distillation teacher).

The registry (`pretrained_weights/registry.json`, written by scripts/pack_pretrained.py) maps each name to
a weights-only checkpoint: a file shipped inside the package, or an address to download it from, and in
both cases its sha256, checked before the file is used. Downloads are cached (`pretrained_dir`, conf/
common.yaml) and a file lock makes parallel jobs download once. The files are read like any checkpoint,
with `torch.load(weights_only=True)`: tensors, numbers and strings, no code. Each entry carries its model
card (split, recipe, data, accuracy with intervals, calibration, size): docs/pretrained.md shows them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emnist_lightning.atomic import partial_beside
from emnist_lightning.data.download import download, one_downloader
from emnist_lightning.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

PREFIX = "pretrained:"
WEIGHTS_DIR = Path(__file__).with_name("pretrained_weights")
REGISTRY_PATH = WEIGHTS_DIR / "registry.json"
MAX_MODEL_BYTES = 256 << 20  # a published model is a few MB; an answer past this is not one


@dataclass(frozen=True)
class PretrainedModel:
    """One registry entry: where its weights are (a file beside the registry, or a URL) and their sha256."""

    name: str
    sha256: str
    file: str | None = None
    url: str | None = None
    card: dict[str, Any] = field(default_factory=dict)


def read_registry(path: Path = REGISTRY_PATH) -> dict[str, PretrainedModel]:
    """The published models by name."""
    try:
        entries = json.loads(path.read_text())
        return {name: PretrainedModel(name=name, **entry) for name, entry in entries.items()}
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"the registry of pretrained models '{path}' is unreadable ({err}); reinstall") from err


def resolve_models(
    spec: str | Path | Sequence[str | Path] | None, pretrained_dir: str | Path, registry_path: Path = REGISTRY_PATH
) -> list[Path]:
    """Local paths for `ckpt_path=`: files as given, and `pretrained:<name>` as its checked (and, if it has to
    be downloaded, cached) weights."""
    if not spec:
        raise ConfigError(
            "no model given: pass ckpt_path= a checkpoint of train.py, a model from emnist-export, "
            "or a published one such as pretrained:balanced"
        )
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    return [
        pretrained_path(str(each), pretrained_dir, registry_path) if is_pretrained(each) else Path(each)
        for each in specs
    ]


def is_pretrained(spec: str | Path) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def pretrained_path(spec: str, pretrained_dir: str | Path, registry_path: Path = REGISTRY_PATH) -> Path:
    """The checked weights file of `pretrained:<name>`."""
    name = spec.removeprefix(PREFIX)
    models = read_registry(registry_path)
    if name not in models:
        raise ConfigError(f"no pretrained model '{name}'; published: {', '.join(f'{PREFIX}{key}' for key in models)}")
    model = models[name]
    if model.file is not None and (registry_path.parent / model.file).is_file():
        return checked(registry_path.parent / model.file, model)
    if model.url is None:
        raise CheckpointError(f"{spec} is not installed and has no download address; reinstall emnist-lightning")
    return downloaded(model, Path(pretrained_dir).expanduser())


def downloaded(model: PretrainedModel, pretrained_dir: Path) -> Path:
    """The model's weights in the cache, downloaded once (parallel jobs wait on a lock) and checked."""
    target = pretrained_dir / f"{model.name}-{model.sha256[:16]}.ckpt"
    try:
        pretrained_dir.mkdir(parents=True, exist_ok=True)
        with one_downloader(pretrained_dir / f".{target.name}.lock", f"{PREFIX}{model.name}"):
            if not target.is_file():
                fetch(model, target)
    except OSError as err:
        raise CheckpointError(
            f"cannot download {PREFIX}{model.name} into '{pretrained_dir}' ({type(err).__name__}: {err}); "
            "go online, or set pretrained_dir (or EMNIST_PRETRAINED_DIR) to a writable folder"
        ) from err
    return checked(target, model)


def fetch(model: PretrainedModel, target: Path) -> None:
    assert model.url is not None
    log.info("Downloading %s%s from %s", PREFIX, model.name, model.url)
    partial = partial_beside(target)
    try:
        digest = download(model.url, partial, "sha256", MAX_MODEL_BYTES)
        if digest != model.sha256:
            raise CheckpointError(
                f"{PREFIX}{model.name} from {model.url} has sha256 {digest}, not the published {model.sha256}: "
                "it was tampered with or is another file, so it was not kept; try again later"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def checked(path: Path, model: PretrainedModel) -> Path:
    """`path`, once its content is the registry's (a file changed since it was published is refused)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != model.sha256:
        raise CheckpointError(
            f"'{path}' ({PREFIX}{model.name}) has sha256 {digest}, not the published {model.sha256}; it was "
            "changed or damaged: delete it (a cached download is fetched again) or reinstall emnist-lightning"
        )
    return path


# What a published model keeps of a train.py checkpoint: enough to rebuild, normalise and calibrate it.
KEPT_KEYS = ("pytorch-lightning_version", "hyper_parameters", "temperature")
DATAMODULE_KEY = "EMNISTDataModule"


def weights_only_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A train.py checkpoint without its optimizer, loops and callbacks, floating-point weights in float16
    (they load back into float32 networks): half the size. docs/pretrained.md gives each published model's
    test figures measured on the packed file, beside the training run's own."""
    state = {
        key: value.half() if value.is_floating_point() else value for key, value in checkpoint["state_dict"].items()
    }
    stats = checkpoint[DATAMODULE_KEY]
    return {key: checkpoint[key] for key in KEPT_KEYS} | {
        "state_dict": state,
        DATAMODULE_KEY: {"mean": stats["mean"], "std": stats["std"]},
    }
