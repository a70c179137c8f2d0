"""The study's sweeps (conf/sweep/study_*.yaml, ladder_*.yaml) hold what they promise: every configuration the
study is about, 5 seeds or more of each, paired over the same seeds, at the stated budget."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from emnist_lightning.overrides import parse_overrides
from emnist_lightning.runs.config import compose
from emnist_lightning.runs.resume import planned_jobs

SEEDS = 5
# what each study compares with its family's default (the baseline: cosine schedule, relu, Adam, no
# batch norm, L1, L2 or dropout for the MLP)
MLP_STUDY = {
    "schedules": {"constant_lr", "step_lr", "plateau_lr", "exponential_lr", "onecycle"},
    "activations": {"leaky_relu", "gelu", "tanh", "sigmoid"},
    "optimizers": {"sgd", "momentum", "adamw", "rmsprop"},
    "batch norm, penalties, dropout": {"batch_norm", "l1", "l2", "l1_l2", "dropout", "batch_norm_dropout"},
    "stronger": {"shift", "affine", "elastic", "erasing", "label_smoothing", "ema", "mixup", "cutmix"},
    "depth and width": {"deeper", "wider"},
}


def jobs_of(tmp_path: Path, sweep: str) -> list[dict[str, str]]:
    """The sweep's jobs as Hydra's basic sweeper expands them, each as {key: value}."""
    cfg = compose("train", [f"sweep={sweep}"], tmp_path)
    jobs = []
    for overrides in planned_jobs(cfg):
        parsed = parse_overrides(overrides)
        jobs.append({override.key_or_group: str(override.value()) for override in parsed})
    return jobs


def seeds_by(jobs: list[dict[str, str]], *keys: str) -> dict[tuple[str, ...], set[str]]:
    seeds = defaultdict(set)
    for job in jobs:
        seeds[tuple(job[key] for key in keys)].add(job["seed"])
    return seeds


def test_the_mlp_study_runs_every_technique_5_seeds_at_its_converged_budget(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path, "study_mlp")
    assert jobs[0]["technique"] == "baseline", "the report compares with the sweep's first configuration"
    seeds = seeds_by(jobs, "technique")
    for group, techniques in MLP_STUDY.items():
        assert techniques <= {technique for (technique,) in seeds}, group
    assert {len(each) for each in seeds.values()} == {SEEDS}
    assert len(set(map(frozenset, seeds.values()))) == 1, "every configuration ran the baseline's seeds"
    budget = compose("train", ["sweep=study_mlp", "technique=mixup", "seed=3"], tmp_path)
    assert budget.trainer.max_epochs == 10 and budget.model.network == "mlp"
    assert budget.mixing._target_.endswith("Mixup")


def test_the_budget_sweep_compares_the_budget_sensitive_techniques_at_3_or_more_budgets(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path, "study_mlp_budgets")
    seeds = seeds_by(jobs, "trainer.max_epochs", "technique")
    budgets = {budget for budget, _ in seeds}
    assert len(budgets) >= 3
    for budget in budgets:
        assert {"baseline", "ema", "shift", "dropout"} <= {name for each, name in seeds if each == budget}
    assert {len(each) for each in seeds.values()} == {SEEDS}


def flat(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose("train", list(overrides), tmp_path)
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)


def test_the_mlp_ladder_goes_from_the_default_to_mlp_best_one_change_at_a_time(tmp_path: Path) -> None:
    jobs = jobs_of(tmp_path, "ladder_mlp")
    steps = list(dict.fromkeys(job["ladder"] for job in jobs))
    assert {len(each) for each in seeds_by(jobs, "ladder").values()} == {SEEDS}
    configs = [flat(tmp_path, f"ladder={step}") for step in steps]
    assert configs[0] == flat(tmp_path), "the first step is the default configuration"
    assert configs[-1] == flat(tmp_path, "experiment=mlp_best"), "the last step is the preset"
    for before, after, step in zip(configs, configs[1:], steps[1:], strict=False):
        assert before != after, f"{step} changes nothing"


@pytest.mark.parametrize("sweep", ["study_mlp", "study_mlp_budgets", "ladder_mlp"])
def test_a_study_states_its_cost_per_job(tmp_path: Path, sweep: str) -> None:
    assert compose("train", [f"sweep={sweep}"], tmp_path).study.seconds_per_job > 0
