"""Every option of every config group composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from emnist_lightning import runs
from emnist_lightning.train import build_model

CONF = Path(runs.config_dir())
SKIPPED_GROUPS = {"hydra"}  # Hydra's own settings, exercised by every run


def group_options() -> list[tuple[str, str]]:
    options = []
    for folder in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name not in SKIPPED_GROUPS):
        options += [(folder.name, file.stem) for file in sorted(folder.glob("*.yaml"))]
    return options


def compose_train(tmp_path: Path, *overrides: str) -> DictConfig:
    return runs.compose("train", list(overrides), tmp_path)


def instantiate_everything(cfg: DictConfig) -> None:
    instantiate(cfg.data)
    model = build_model(cfg)
    optimizer = model.optimizer_factory(params=model.parameters())
    assert isinstance(optimizer, torch.optim.Optimizer)
    if model.schedule is not None:
        model.schedule.lightning_config(optimizer, total_steps=100, total_epochs=cfg.trainer.max_epochs)
    runs.build_trainer(cfg, runs.build_callbacks(cfg.callbacks))


def test_every_group_has_options() -> None:
    groups = {group for group, _ in group_options()}
    assert {"data", "model", "optimizer", "scheduler", "regularization", "trainer", "logger", "callbacks"} <= groups


@pytest.mark.parametrize(("group", "option"), group_options(), ids=lambda value: str(value))
def test_option_composes_and_instantiates(tmp_path: Path, group: str, option: str) -> None:
    if group == "trainer" and option == "gpu" and not torch.cuda.is_available():
        cfg = compose_train(tmp_path, f"{group}={option}")
        assert cfg.trainer.precision == "bf16-mixed"
        return
    cfg = compose_train(tmp_path, f"{group}={option}")
    if group == "callbacks" and option == "eval":
        runs.build_callbacks(cfg.callbacks)
        return
    instantiate_everything(cfg)


def test_eval_config_composes(tmp_path: Path) -> None:
    cfg = runs.compose("eval", ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.ckpt_path == "x.ckpt"
    assert "test_diagnostics" in cfg.callbacks


def test_data_dir_comes_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMNIST_DATA_DIR", "/somewhere/emnist")
    assert compose_train(tmp_path).data.data_dir == "/somewhere/emnist"
    monkeypatch.delenv("EMNIST_DATA_DIR")
    assert compose_train(tmp_path).data.data_dir == "data/emnist"
