"""Continuing a stopped run in its own folder: `python train.py resume=<run dir> [trainer.max_epochs=N]`.

The run's composed config (`.hydra/config.yaml`) is reused as it was, and Hydra writes no new `.hydra/`
files. A run folder may come from someone else, so its config is untrusted: every object it would build
(`_target_`) must be one that the project's own configs, composed with the run's recorded overrides, build
at the same place; anything else is refused before anything runs. Only keys that cannot change what was
trained so far may be given again. Training continues from `checkpoints/last.ckpt` with its epoch,
optimizer, scheduler, metric and random states, and logs into the same TensorBoard folder, whose events
after the checkpoint's step are replaced.

A SLURM job that the cluster requeues (after preemption or its time limit) continues the same way, by itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from emnist_lightning.data import LEGACY_SPLIT
from emnist_lightning.errors import ConfigError
from emnist_lightning.models.checkpoints import read_checkpoint
from emnist_lightning.runs.config import compose, override_text, override_value, parse_overrides
from emnist_lightning.runs.context import RunContext

# Keys a resumed run may set: where the data is, how the process runs, and a longer run.
RESUMABLE_KEYS = ("trainer.max_epochs", "data.data_dir", "data.download", "num_threads")
RESUMABLE_PREFIXES = ("callbacks.progress_bar",)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def is_resumable(key: str) -> bool:
    return key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES)


def check_run_dir(run_dir: Path) -> None:
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"resume={run_dir}: not a run folder (no .hydra/config.yaml); pass the folder a run wrote")
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise ConfigError(
            f"resume={run_dir}: the run saved no {LAST_CHECKPOINT} (it stopped before its first epoch ended, or "
            "checkpointing was off); start it again instead"
        )


def resume_arguments(arguments: list[str]) -> list[str]:
    """The command line with `resume=<dir>` turned into what Hydra needs to run in that folder again;
    any other command line is returned as it is. Everything is checked here, before Hydra writes to
    the folder, so a refused resume leaves the run as it was."""
    run_dir_value = override_value(arguments, "resume")
    if run_dir_value is None:
        return arguments
    if any(argument in ("-m", "--multirun") for argument in arguments):
        raise ConfigError("resume= continues one run; it cannot be combined with -m")
    run_dir = Path(str(run_dir_value)).expanduser().resolve()
    check_run_dir(run_dir)
    check_targets(run_dir)
    others = [override for override in parse_overrides(arguments) if override.key_or_group != "resume"]
    for override in others:
        if not is_resumable(override.key_or_group):
            raise ConfigError(
                f"resume= keeps the run's own config, so {override.key_or_group} cannot change; allowed: "
                f"{', '.join(RESUMABLE_KEYS + RESUMABLE_PREFIXES)}. Start a new run to change it"
            )
    epochs = override_value(arguments, "trainer.max_epochs")
    if epochs is not None:
        check_epochs(int(epochs), OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    read_checkpoint(run_dir / LAST_CHECKPOINT)  # refuses a checkpoint that is not plain data
    kept = [argument for argument in arguments if argument.startswith("-")] + [o.input_line for o in others]
    quoted = override_text(run_dir)  # a folder whose name holds '=' or ',' is still one value
    return [f"resume={quoted}", *kept, f"hydra.run.dir={quoted}", "hydra.output_subdir=null"]


def targets(node: Any, path: str = "") -> dict[str, str]:
    """{'callbacks.model_checkpoint': 'lightning...ModelCheckpoint', ...}: what a config would instantiate."""
    found: dict[str, str] = {}
    if isinstance(node, dict):
        if "_target_" in node:
            found[path or "<root>"] = str(node["_target_"])
        for key, value in node.items():
            found |= targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found |= targets(value, f"{path}[{index}]")
    return found


def check_targets(run_dir: Path) -> None:
    """Refuse a run folder whose config would build objects the project's configs do not (a planted
    `_target_` such as shutil.copy runs when the config is instantiated)."""
    recorded = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    planted = [o for o in recorded if any(word in str(o) for word in ("_target_", "_args_", "_partial_", "_call_"))]
    if planted:
        raise ConfigError(f"resume={run_dir}: its recorded overrides set {planted[0]!r}, which would run code; refused")
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=False)
    try:
        composed = compose("train", [str(o) for o in recorded if not str(o).startswith("hydra")], run_dir)
    except Exception as err:  # the overrides no longer compose with this version's configs
        raise ConfigError(
            f"resume={run_dir}: its overrides do not compose with these configs ({err}); start a new run"
        ) from err
    expected = targets(OmegaConf.to_container(composed, resolve=False))
    for path, target in targets({k: v for k, v in saved.items() if k != "hydra"}).items():
        if expected.get(path) != target:
            raise ConfigError(
                f"resume={run_dir}: its .hydra/config.yaml would build {target} at {path}, which this project's "
                "configs with the run's overrides do not; a run folder cannot bring code of its own: refused"
            )


def resumed_config(cfg: DictConfig, context: RunContext) -> DictConfig:
    """The stopped run's own config, with the resumable keys this command line gave."""
    run_dir = Path(cfg.resume)
    resumed = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    for override in parse_overrides(context.command_overrides):
        if override.key_or_group != "resume":
            key = override.key_or_group
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
    resumed.resume = str(run_dir)
    if "split" not in resumed.data:  # a run from before the six splits trained on Balanced
        resumed.data.split = LEGACY_SPLIT
    current = OmegaConf.to_container(cfg.data, resolve=False)
    for key in current.keys() - resumed.data.keys():  # keys a newer version added, e.g. data.archive_url
        resumed.data[key] = current[key]
    if resumed.get("search") is not None:  # a search trial continued by hand: its trial has been told already
        resumed.search.trial = None
    return resumed


def check_epochs(wanted: int, original: DictConfig) -> None:
    planned = original.trainer.max_epochs
    if wanted == planned:
        return
    if wanted < planned:
        raise ConfigError(
            f"trainer.max_epochs={wanted} is fewer than the run's {planned}; resume with {planned} or more"
        )
    if original.get("scheduler") and original.scheduler.get("length_arg"):
        raise ConfigError(
            f"trainer.max_epochs cannot grow on resume: the run's learning-rate schedule "
            f"({original.scheduler.scheduler._target_.rsplit('.', 1)[-1]}) was laid out for {planned} epochs; "
            "start a new run for a longer one"
        )


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was taken at."""
    return int(read_checkpoint(checkpoint)["global_step"])


def requeued() -> bool:
    """Whether this is a SLURM job running again after preemption or its time limit (SLURM counts the
    restarts; submitit's launcher requeues its jobs with the same folder and config)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def requeued_checkpoint(run_dir: Path) -> Path | None:
    """For a requeued job: the last.ckpt its earlier attempt left in its folder, to continue from. None
    otherwise, and None when Lightning's own SLURM requeue (on SIGUSR1) saved an hpc_ckpt_N.ckpt there,
    which Lightning loads itself."""
    if not requeued() or any(run_dir.glob("hpc_ckpt_*.ckpt")):
        return None
    last = run_dir / LAST_CHECKPOINT
    return last if last.is_file() else None
