"""Optimizers, learning-rate schedules and L1/L2 penalties do what their configs say."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from emnist_lightning.errors import ConfigError
from emnist_lightning.models import EMNISTClassifier
from emnist_lightning.models.losses import WeightPenalty
from emnist_lightning.models.optim import LRSchedule
from tests.conftest import model_arguments, quick_trainer, synthetic_datamodule
from tests.test_configs import compose_train, group_options

OPTIMIZERS = [option for group, option in group_options() if group == "optimizer"]
BASE_LR = 0.1


def lr_trace(
    schedule: LRSchedule, steps: int, total_steps: int = 100, total_epochs: int = 10, metric=None
) -> list[float]:
    """The learning rate seen by each of `steps` scheduler steps."""
    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([weight], lr=BASE_LR)
    scheduler = schedule.lightning_config(optimizer, total_steps, total_epochs)["scheduler"]
    trace = []
    for step in range(steps):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(metric(step)) if metric else scheduler.step()
    return trace


def schedule_from_config(tmp_path: Path, name: str, *overrides: str) -> LRSchedule:
    cfg = compose_train(tmp_path, f"scheduler={name}", f"optimizer.lr={BASE_LR}", *overrides)
    return instantiate(cfg.scheduler)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_steps(tmp_path: Path, name: str) -> None:
    cfg = compose_train(tmp_path, f"optimizer={name}")
    network = torch.nn.Linear(4, 2)
    before = network.weight.detach().clone()
    optimizer = instantiate(cfg.optimizer)(params=network.parameters())
    network(torch.randn(8, 4)).square().mean().backward()
    optimizer.step()
    assert not torch.equal(before, network.weight)
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_use_torchs_fused_kernel_with_the_same_steps(tmp_path: Path, name: str) -> None:
    """Where torch has a fused implementation the config asks for it, and it takes the steps the default
    implementation takes (to float rounding)."""
    cfg = compose_train(tmp_path, f"optimizer={name}")
    factory = instantiate(cfg.optimizer)
    has_fused = "fused" in inspect.signature(factory.func).parameters
    assert cfg.optimizer.get("fused") is (True if has_fused else None)
    if not has_fused:
        return
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 20), torch.randint(0, 5, (64,))
    networks = {
        fused: torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
        for fused in (True, False)
    }
    networks[False].load_state_dict(networks[True].state_dict())
    for fused, network in networks.items():
        optimizer = factory(params=network.parameters(), fused=fused)
        for _ in range(5):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(inputs), targets).backward()
            optimizer.step()
    for fused_weight, weight in zip(networks[True].parameters(), networks[False].parameters(), strict=True):
        torch.testing.assert_close(fused_weight, weight, rtol=1e-5, atol=1e-6)


def test_step_schedule(tmp_path: Path) -> None:
    trace = lr_trace(schedule_from_config(tmp_path, "step"), steps=11)
    assert trace[:5] == [BASE_LR] * 5
    assert trace[5] == pytest.approx(BASE_LR / 2) and trace[10] == pytest.approx(BASE_LR / 4)


def test_multistep_schedule(tmp_path: Path) -> None:
    trace = lr_trace(schedule_from_config(tmp_path, "multistep"), steps=13)
    assert (
        trace[7] == BASE_LR and trace[8] == pytest.approx(BASE_LR * 0.1) and trace[12] == pytest.approx(BASE_LR * 0.01)
    )


def test_exponential_schedule(tmp_path: Path) -> None:
    trace = lr_trace(schedule_from_config(tmp_path, "exponential"), steps=4)
    assert trace == pytest.approx([BASE_LR * 0.85**k for k in range(4)])


def test_cosine_schedule_spans_the_run(tmp_path: Path) -> None:
    trace = lr_trace(schedule_from_config(tmp_path, "cosine"), steps=101, total_steps=100)
    assert trace[0] == BASE_LR
    assert trace[50] == pytest.approx(BASE_LR / 2, rel=1e-3)
    assert trace[100] == pytest.approx(0.0, abs=1e-9)


def test_cosine_with_warmup(tmp_path: Path) -> None:
    schedule = schedule_from_config(tmp_path, "cosine", "scheduler.warmup_steps=10")
    trace = lr_trace(schedule, steps=101, total_steps=100)
    assert trace[0] == pytest.approx(BASE_LR * 0.01)
    assert trace[:11] == sorted(trace[:11])  # rising
    assert trace[10] == pytest.approx(BASE_LR)
    assert trace[55] == pytest.approx(BASE_LR / 2, rel=1e-2)  # half-way through the 90 cosine steps


def test_onecycle_peaks_at_the_optimizer_lr(tmp_path: Path) -> None:
    trace = lr_trace(schedule_from_config(tmp_path, "onecycle"), steps=100, total_steps=100)
    assert max(trace) == pytest.approx(BASE_LR)
    assert trace.index(max(trace)) == pytest.approx(25, abs=1)
    assert trace[0] < BASE_LR / 10 and trace[-1] < BASE_LR / 100


def test_plateau_halves_when_the_metric_stalls(tmp_path: Path) -> None:
    schedule = schedule_from_config(tmp_path, "plateau")
    assert schedule.monitor == "val/loss"
    trace = lr_trace(schedule, steps=6, metric=lambda step: 1.0)
    assert trace[0] == BASE_LR and trace[-1] < BASE_LR


def test_warmup_needs_a_per_step_schedule() -> None:
    with pytest.raises(ConfigError, match="per-step"):
        LRSchedule(torch.optim.lr_scheduler.StepLR, interval="epoch", warmup_steps=5)


def test_trainer_steps_the_schedule(tmp_path: Path, synthetic_dir: Path) -> None:
    schedule = schedule_from_config(tmp_path, "step", "scheduler.scheduler.step_size=1")
    model = EMNISTClassifier(**model_arguments(hidden_dims=[8, 8, 8]), optimizer=torch.optim.SGD, scheduler=schedule)
    model.optimizer_factory = lambda params: torch.optim.SGD(params, lr=BASE_LR)
    trainer = quick_trainer(tmp_path, max_epochs=3, limit_train_batches=2)
    trainer.fit(model, datamodule=synthetic_datamodule(synthetic_dir, batch_size=16))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(BASE_LR * 0.5**3)


def tiny_model(l1: float, l2: float) -> EMNISTClassifier:
    return EMNISTClassifier(**model_arguments(hidden_dims=[3, 3, 3], batch_norm=True), penalty=WeightPenalty(l1, l2))


def weight_penalty(model: EMNISTClassifier) -> torch.Tensor:
    return model.penalty(model.penalized_weights(), model.device)


def test_penalty_matches_its_formula() -> None:
    model = tiny_model(l1=0.01, l2=0.1)
    weights = [m.weight for m in model.network.modules() if isinstance(m, torch.nn.Linear)]
    expected = sum(0.01 * w.abs().sum() + 0.1 * w.square().sum() for w in weights)
    assert weight_penalty(model).item() == pytest.approx(expected.item())
    assert len(list(model.penalized_weights())) == 4  # 3 hidden + output; no biases or BN


def test_penalty_gradient_reaches_weights_only() -> None:
    model = tiny_model(l1=0.01, l2=0.1)
    weight_penalty(model).backward()
    for module in model.network.modules():
        if isinstance(module, torch.nn.Linear):
            expected = 0.01 * module.weight.sign() + 2 * 0.1 * module.weight
            assert torch.allclose(module.weight.grad, expected)
            if module.bias is not None:
                assert module.bias.grad is None
        if isinstance(module, torch.nn.BatchNorm1d):
            assert module.weight.grad is None


def test_no_penalty_by_default() -> None:
    assert weight_penalty(tiny_model(0.0, 0.0)).item() == 0.0


def test_negative_penalty_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must be >= 0"):
        tiny_model(l1=-1.0, l2=0.0)


def test_divergence_is_reported(tmp_path: Path, synthetic_dir: Path) -> None:
    model = EMNISTClassifier(
        **model_arguments(hidden_dims=[8, 8, 8]), optimizer=lambda params: torch.optim.SGD(params, lr=1e12)
    )
    trainer = quick_trainer(tmp_path, max_epochs=3, limit_train_batches=5)
    with pytest.raises(FloatingPointError, match="diverged.*lower optimizer.lr"):
        trainer.fit(model, datamodule=synthetic_datamodule(synthetic_dir, batch_size=16))
    assert not math.isfinite(trainer.callback_metrics["val/loss"].item())
