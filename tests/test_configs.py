"""Every option of every config group composes and builds; presets and sweeps mean what they say."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import hydra.utils
import lightning as L
import optuna
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from emnist_lightning import cli
from emnist_lightning.errors import ConfigError
from emnist_lightning.models.networks import ACTIVATIONS, CNN, MLP, per_layer
from emnist_lightning.overrides import override_text, override_value, parse_overrides
from emnist_lightning.pictures import evaluation_figures
from emnist_lightning.runs import host
from emnist_lightning.runs.config import as_multirun, compose, config_dir
from emnist_lightning.runs.context import RunContext
from emnist_lightning.training.build import (
    build_datamodule,
    build_entries,
    build_model,
    build_trainer,
    build_training_callbacks,
)
from emnist_lightning.training.callbacks import Stopwatch
from tests.conftest import configured_settings, quick_trainer, sweep_jobs

CONF = Path(config_dir())
SKIPPED_GROUPS = {"hydra"}  # Hydra's own settings, exercised by every run


def group_options(group: str | None = None) -> list[tuple[str, str]]:
    folders = [CONF / group] if group else sorted(p for p in CONF.iterdir() if p.is_dir())
    options = []
    for folder in (f for f in folders if f.name not in SKIPPED_GROUPS):
        options += [(folder.name, file.stem) for file in sorted(folder.glob("*.yaml"))]
    return options


def compose_train(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose("train", list(overrides), tmp_path)


def instantiate_everything(cfg: DictConfig) -> None:
    # data=model_split leaves the split to evaluate.py's checkpoint
    datamodule = build_datamodule(cfg, **({} if cfg.data.split else {"split": "letters"}))
    model = build_model(cfg, datamodule)
    optimizer = model.optimizer_factory(params=model.parameters())
    assert isinstance(optimizer, torch.optim.Optimizer)
    if model.schedule is not None:
        model.schedule.lightning_config(optimizer, total_steps=100, total_epochs=cfg.trainer.max_epochs)
    build_trainer(cfg, build_entries(cfg.callbacks))


def test_every_group_has_options() -> None:
    groups = {group for group, _ in group_options()}
    techniques = {"augment", "mixing", "loss", "weight_averaging", "regularization", "optimizer", "scheduler"}
    assert {"data", "model", "trainer", "logger", "callbacks", *techniques} <= groups


def family_of(group: str, option: str) -> list[str]:
    """A technique that sets model keys only the CNN has (model.channels) is composed onto the CNN; the
    others onto the default MLP."""
    if group != "technique":
        return []
    model_keys = set((OmegaConf.load(CONF / group / f"{option}.yaml").get("model") or {}).keys())
    mlp_keys, cnn_keys = (set(OmegaConf.load(CONF / "model" / f"{name}.yaml")) for name in ("mlp", "cnn"))
    return ["model=cnn"] if model_keys and model_keys <= cnn_keys and not model_keys <= mlp_keys else []


@pytest.mark.parametrize(("group", "option"), group_options(), ids=lambda value: str(value))
def test_option_composes_and_instantiates(tmp_path: Path, group: str, option: str) -> None:
    cfg = compose_train(tmp_path, f"{group}={option}", *family_of(group, option))
    if group == "trainer" and cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.precision == "auto"
        return
    if group == "callbacks" and option == "evaluate":
        build_entries(cfg.callbacks)
        return
    if group == "loss" and option == "distilled":  # its teacher is a checkpoint the user names
        with pytest.raises(ConfigError, match="needs loss.teacher"):
            instantiate_everything(cfg)
        return
    instantiate_everything(cfg)


def test_evaluate_config_composes(tmp_path: Path) -> None:
    cfg = compose("evaluate", ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.ckpt_path == "x.ckpt"
    assert [name for name, node in cfg.callbacks.items() if node is not None] == [
        "progress_bar",
        "test_diagnostics",
        "model_pictures",
    ]


def test_callbacks_choices_are_presets_only() -> None:
    """`python train.py --help` lists what callbacks= takes: whole sets, not the single callbacks in them."""
    assert {option for group, option in group_options("callbacks")} == {"default", "evaluate", "no_pictures"}


@pytest.mark.parametrize(
    ("config", "keys"),
    [("predict", {"inputs", "predict"}), ("export", {"format"}), ("demo", {"demo"})],
)
def test_model_use_configs_compose(tmp_path: Path, config: str, keys: set[str]) -> None:
    cfg = compose(config, ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.ckpt_path == "x.ckpt" and keys <= set(cfg)
    assert cfg.hydra.job.name == config  # run dirs: outputs/<config>/...


def test_data_dir_comes_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMNIST_DATA_DIR", "/somewhere/emnist")
    assert compose_train(tmp_path).data.data_dir == "/somewhere/emnist"
    monkeypatch.delenv("EMNIST_DATA_DIR")
    assert compose_train(tmp_path).data.data_dir == "data/emnist"


# --- model presets: the composed keys are what the module builds ---------------------------------


def dropout_rates(network: nn.Module, kind: type[nn.Module]) -> list[float]:
    return [m.p for m in network.modules() if type(m) is kind]


def activation_names(network: nn.Module) -> set[str]:
    return {name for name, kind in ACTIVATIONS.items() for m in network.modules() if type(m) is kind}


def assert_mlp_matches(network: MLP, keys: dict[str, Any]) -> None:
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears[:-1]] == keys["hidden_dims"]
    assert any(isinstance(m, nn.BatchNorm1d) for m in network.modules()) == keys["batch_norm"]
    rates = per_layer(keys["dropout"], len(keys["hidden_dims"]), "dropout")
    assert dropout_rates(network, nn.Dropout) == [rate for rate in rates if rate > 0]


def assert_cnn_matches(network: CNN, keys: dict[str, Any]) -> None:
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    per_block = per_layer(keys["convs_per_block"], len(keys["channels"]), "convs_per_block")
    kernels = per_layer(keys["kernel_size"], len(keys["channels"]), "kernel_size")
    blocks = zip(keys["channels"], kernels, per_block, strict=True)
    layers = [(width, kernel) for width, kernel, count in blocks for _ in range(count)]
    assert [(m.out_channels, m.kernel_size[0]) for m in convs] == layers
    assert [m.out_features for m in network.head if isinstance(m, nn.Linear)][:-1] == keys["head_dims"]
    assert any(isinstance(m, nn.BatchNorm2d) for m in network.modules()) == keys["batch_norm"]
    assert set(dropout_rates(network, nn.Dropout)) == ({keys["dropout"]} if keys["dropout"] else set())
    assert set(dropout_rates(network, nn.Dropout2d)) == ({keys["conv_dropout"]} if keys["conv_dropout"] else set())
    assert convs[0].weight.is_contiguous(memory_format=torch.channels_last) == keys["channels_last"]


STRUCTURE_CHECKS = {"mlp": assert_mlp_matches, "cnn": assert_cnn_matches}


@pytest.mark.parametrize("preset", [option for _, option in group_options("model")])
def test_model_preset_builds_what_it_composes_to(tmp_path: Path, preset: str) -> None:
    keys = OmegaConf.to_container(compose_train(tmp_path, f"model={preset}").model, resolve=True)
    cfg = compose_train(tmp_path, f"model={preset}")
    model = build_model(cfg, build_datamodule(cfg))
    saved = {key: model.hparams[key] for key in keys if key != "_target_"}
    assert saved == {key: value for key, value in keys.items() if key != "_target_"}
    assert activation_names(model.network) == {keys["activation"]}
    # a family's own tests check the structure of families without a check here (tests/test_<family>.py)
    STRUCTURE_CHECKS.get(keys["network"], lambda network, keys: None)(model.network, keys)


@pytest.mark.parametrize("penalty", [option for _, option in group_options("regularization")])
def test_regularization_group_never_touches_the_model(tmp_path: Path, penalty: str) -> None:
    for preset in ("mlp", "cnn"):
        plain = compose_train(tmp_path, f"model={preset}")
        penalised = compose_train(tmp_path, f"model={preset}", f"regularization={penalty}")
        assert penalised.model == plain.model
        assert set(penalised.regularization) == {"_target_", "l1", "l2"}


# --- sweeps: every job differs from the sweep's first job only in the keys it overrides ------------


def flat_job_config(cfg: DictConfig) -> dict[str, Any]:
    """Every resolved key of the job's config except Hydra's own, as {'model.dropout': 0.2, ...}."""
    container = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        else:
            flat[prefix] = node

    walk(container, "")
    return flat


def changed_keys(first: dict[str, Any], other: dict[str, Any]) -> set[str]:
    return {key for key in first.keys() | other.keys() if first.get(key, "<absent>") != other.get(key, "<absent>")}


# Keys whose value is an interpolation of another key: the seed is also the validation split's.
INTERPOLATED = {"seed": {"data.seed"}}


def option_owns(group: str, option: str, config_key: str) -> bool:
    """A technique (conf/technique/) or ladder step (conf/ladder/) owns the groups its defaults override, the
    keys it sets, and what the steps it builds on (its other defaults) own."""
    spec = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml")) or {}
    entries = spec.pop("defaults", [])
    overridden = [next(iter(entry)).removeprefix("override /") for entry in entries if isinstance(entry, dict)]
    built_on = [entry for entry in entries if isinstance(entry, str)]
    keys = {f"{section}.{key}" for section, values in spec.items() for key in values}
    if config_key in keys or any(config_key == g or config_key.startswith(f"{g}.") for g in overridden):
        return True
    return any(option_owns(group, step, config_key) for step in built_on)


def owns(override_key: str, config_key: str, value: str = "") -> bool:
    """A group override (`optimizer=adam`) owns the whole group's keys; a key override only its key (and
    the keys interpolating it)."""
    if override_key in ("technique", "ladder"):
        return option_owns(override_key, value, config_key)
    is_group = "." not in override_key and (CONF / override_key).is_dir()
    in_group = is_group and config_key.startswith(f"{override_key}.")
    return config_key == override_key or in_group or config_key in INTERPOLATED.get(override_key, set())


def jobs_that_cover_the_grid(jobs: list[dict[str, str]]) -> list[dict[str, str]]:
    """The jobs that change one parameter of the first job, and the last job, which changes every parameter
    that has more than one value: each value is composed alone once and all together once. The rest of a grid
    (technique x seed: 145 jobs for study_cnn, about half a second each to compose) only combines them."""
    first = jobs[0]
    one_change = [job for job in jobs[1:] if sum(value != first[key] for key, value in job.items()) == 1]
    return one_change + ([jobs[-1]] if jobs[-1] not in one_change else [])


@pytest.mark.parametrize("sweep", [option for _, option in group_options("sweep")])
def test_every_sweep_job_differs_from_the_first_only_as_named(tmp_path: Path, sweep: str) -> None:
    jobs = sweep_jobs(compose_train(tmp_path, f"sweep={sweep}"))
    assert len(jobs) >= 2
    checked = jobs_that_cover_the_grid(jobs)
    for key in jobs[0]:  # every value that any job gives a parameter is among the checked jobs' values
        assert {job[key] for job in jobs} == {job[key] for job in [jobs[0], *checked]}, key

    def job_config(job: dict[str, str]) -> dict[str, Any]:
        overrides = (f"{key}={value}" for key, value in job.items() if key != "sweep")
        return flat_job_config(compose_train(tmp_path, f"sweep={sweep}", *overrides))

    baseline = job_config(jobs[0])
    for job in checked:
        named = {key for key, value in job.items() if value != jobs[0][key]}
        changed = changed_keys(baseline, job_config(job))
        unexplained = {key for key in changed if not any(owns(name, key, job[name]) for name in named)}
        assert not unexplained, f"{job}: {unexplained} changed without being named"
        for name in named:
            assert any(owns(name, key, job[name]) for key in changed), f"{job}: {name} is named but changes nothing"


# Lightning's defaults that conf/trainer/default.yaml changes on purpose; the rest must match Lightning's.
OUR_TRAINER_DEFAULTS = {
    "accelerator",
    "devices",
    "precision",
    "max_epochs",
    "deterministic",
    "default_root_dir",
    "use_distributed_sampler",
}
BUILT_ELSEWHERE = {"logger", "callbacks", "plugins"}


def test_trainer_config_lists_trainer_arguments_with_lightnings_defaults(tmp_path: Path) -> None:
    """Every key is an argument of this Lightning's Trainer, at its default unless ours. A Lightning release
    that adds an argument passes (the new one is set with +trainer.X=); one that drops a listed one fails."""
    parameters = dict(inspect.signature(L.Trainer.__init__).parameters)
    listed = OmegaConf.to_container(compose_train(tmp_path, "trainer=default").trainer, resolve=True)
    listed.pop("_target_")
    assert not set(listed) - set(parameters), "keys the Trainer does not take"
    assert not set(listed) & BUILT_ELSEWHERE
    assert set(listed) >= OUR_TRAINER_DEFAULTS
    for name, value in listed.items():
        if name not in OUR_TRAINER_DEFAULTS | {"num_sanity_val_steps", "log_every_n_steps"}:
            assert value == parameters[name].default, name
    # Lightning documents None for these as "2" and "50"; the config spells the values out
    assert (listed["num_sanity_val_steps"], listed["log_every_n_steps"]) == (2, 50)


def test_any_trainer_argument_is_set_without_plus(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "trainer.limit_train_batches=10", "trainer.fast_dev_run=true", "trainer.strategy=ddp")
    assert (cfg.trainer.limit_train_batches, cfg.trainer.fast_dev_run, cfg.trainer.strategy) == (10, True, "ddp")


# --- the techniques' groups and presets train: a few steps of each option ------------------------

TRAINED_OPTIONS = [
    *group_options("augment"),
    *group_options("loss"),
    *group_options("mixing"),
    *group_options("weight_averaging"),
    ("model", "cnn_vgg"),
    ("model", "mlp_wide"),
]


@pytest.mark.parametrize(("group", "option"), TRAINED_OPTIONS, ids=lambda value: str(value))
def test_option_trains_a_few_steps(
    tmp_path: Path, synthetic_dir: Path, request: pytest.FixtureRequest, group: str, option: str
) -> None:
    # the average starts at once here: from step 100, as configured, it would still be the initial weights
    early_average = ["weight_averaging.update_starting_at_step=0"] if option == "ema" else []
    teacher = [f"loss.teacher={request.getfixturevalue('synthetic_checkpoint')}"] if option == "distilled" else []
    cfg = compose_train(
        tmp_path,
        f"{group}={option}",
        *early_average,
        *teacher,
        f"data.data_dir={synthetic_dir}",
        "data.batch_size=32",
        *(f"callbacks.{name}=null" for name in ("progress_bar", "lr_monitor", "model_checkpoint")),
    )
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    callbacks = build_training_callbacks(cfg, RunContext(tmp_path), Stopwatch())
    trainer = quick_trainer(tmp_path, callbacks=callbacks.all)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    assert (tmp_path / "augmented_samples.png").is_file() == (group == "augment" and option != "none")


@pytest.mark.parametrize(
    "override",
    ["hydra/launcher=slurm", "hydra/launcher=submitit_local", "hydra/sweeper=emnist_optuna"]
    + [f"hydra/sweeper/pruner={file.stem}" for file in sorted((CONF / "hydra" / "sweeper" / "pruner").glob("*.yaml"))],
)
def test_cluster_and_search_configs_compose(tmp_path: Path, override: str) -> None:
    extra = ["hydra/sweeper=emnist_optuna"] if override.startswith("hydra/sweeper/pruner") else []
    hydra = compose_train(tmp_path, *extra, override).hydra
    if override.startswith("hydra/launcher"):
        assert hydra.launcher._target_.startswith("hydra_plugins.hydra_submitit_launcher")
        assert hydra.launcher.timeout_min > 0
    else:
        assert hydra.sweeper._target_ == "hydra_plugins.emnist_optuna_sweeper.optuna_sweeper.EmnistOptunaSweeper"
        assert isinstance(instantiate(hydra.sweeper.pruner), optuna.pruners.BasePruner)


# --- defaults live in conf/ only -----------------------------------------------------------------------

CONFIGURED_OBJECTS = ["data", "augment", *(f"callbacks.{name}" for name in ("test_diagnostics", "dataset_samples"))]


@pytest.mark.parametrize("key", CONFIGURED_OBJECTS)
def test_configured_keys_have_no_code_defaults(tmp_path: Path, key: str) -> None:
    node = OmegaConf.select(compose_train(tmp_path), key)
    target = hydra.utils.get_class(node._target_)
    configured = OmegaConf.to_container(node)
    for name, parameter in inspect.signature(target.__init__).parameters.items():
        if name in configured:
            assert parameter.default is inspect.Parameter.empty, f"{key}.{name}: a default in code beside conf/'s"


def test_test_figure_settings_have_no_code_defaults() -> None:
    fields = dataclasses.fields(evaluation_figures.EvaluationFigureSettings)
    assert all(field.default is dataclasses.MISSING for field in fields)
    assert {field.name for field in fields} <= set(configured_settings("callbacks.test_diagnostics"))


def test_every_command_has_one_name() -> None:
    """emnist-<name> runs emnist_lightning/cli/<name>.py, whose config is conf/<name>.yaml."""
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((CONF.parent / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {module.name for module in pkgutil.iter_modules(cli.__path__)}
    assert set(scripts) == {f"emnist-{name}" for name in commands}
    for name in commands:
        assert scripts[f"emnist-{name}"] == f"emnist_lightning.cli.{name}:main"
        assert callable(importlib.import_module(f"emnist_lightning.cli.{name}").main)
        assert (CONF / f"{name}.yaml").is_file()


def test_command_lines_are_read_by_hydras_parser() -> None:
    arguments = ["-m", "--cfg", "job", "-cn", "train", "+a.b=1", "~c", "model.hidden_dims=[32,32]", "overwrite=true"]
    assert [override.key_or_group for override in parse_overrides(arguments)] == [
        "a.b",
        "c",
        "model.hidden_dims",
        "overwrite",
    ]
    assert override_value(arguments, "model.hidden_dims") == [32, 32]
    assert override_value(arguments, "overwrite") is True and override_value(arguments, "seed") is None
    with pytest.raises(ConfigError, match=r"cannot read the override 'x=\[32' \(.*\); write key=value"):
        parse_overrides(["x=[32"])


# --- precision=auto: decided by what the hardware computes natively, never by its name --------------------


@pytest.mark.parametrize("preset", ["experiment=cnn_best", "experiment=mlp_best", "model=mlp"])
@pytest.mark.parametrize(
    ("flags", "expected"), [({"avx2", "fma"}, "32-true"), ({"avx512_bf16"}, "bf16-mixed"), ({"amx_bf16"}, "bf16-mixed")]
)
def test_auto_precision_follows_the_cpus_bf16_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str, flags: set[str], expected: str
) -> None:
    monkeypatch.setattr(host, "cpu_flags", lambda: flags)
    cfg = compose_train(tmp_path, preset)
    assert cfg.trainer.precision == "auto", "no preset sets precision itself"
    assert build_trainer(cfg, []).precision == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_on_a_gpu_asks_the_gpu(monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setattr(host, "cpu_flags", lambda: {"avx512_bf16"})  # the CPU's answer must not leak in
    assert host.resolved_precision("auto", "gpu") == expected
    assert host.resolved_precision("auto", "auto") == expected
    assert host.resolved_precision("16-mixed", "gpu") == "16-mixed", "a value given by hand stays"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["sweep=optimizers", "model=cnn"], ["-m", "sweep=optimizers", "model=cnn"]),
        (["hparams_search=mlp_optuna"], ["-m", "hparams_search=mlp_optuna"]),
        (["-m", "sweep=optimizers"], ["-m", "sweep=optimizers"]),
        (["--multirun", "hparams_search=mlp_optuna"], ["--multirun", "hparams_search=mlp_optuna"]),
        (["model=cnn", "optimizer=adam"], ["model=cnn", "optimizer=adam"]),
        (["sweep=null"], ["sweep=null"]),
    ],
)
def test_a_sweep_option_makes_a_multirun(arguments: list[str], expected: list[str]) -> None:
    assert as_multirun(arguments) == expected


@pytest.mark.parametrize(
    "value",
    [True, False, None, 3, 0.001, 1e-9, "adam", "true", "null", "1e-3", "42", "a=b", "it's", "x,y", "[1]",
     "back\\slash", "ends\\", "quote\\'d", "/tmp/run dir/lr=0.1,seed=(1)", "sqlite:///a.db", "~/out", ""],
)  # fmt: skip
def test_the_one_writer_of_an_override_reads_back_as_the_same_value(value: object) -> None:
    """The sweeper's sampled values and resume's folders go through one writer: Hydra reads each back unchanged."""
    read = override_value([f"key={override_text(value)}"], "key")
    assert read == value and type(read) is type(value)
