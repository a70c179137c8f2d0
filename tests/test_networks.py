"""Both model families: shapes, layer-count rules, and that every switch changes the network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.networks import ACTIVATIONS, CNN, MLP

BATCH = torch.randn(5, 1, 28, 28)


def layer_types(network: nn.Module) -> list[type]:
    return [type(m) for m in network.modules()]


def test_mlp_output_shape_and_depth() -> None:
    mlp = MLP([64, 32, 16, 8], num_classes=47)
    assert mlp(BATCH).shape == (5, 47)
    assert sum(isinstance(m, nn.Linear) for m in mlp.modules()) == 5


def test_cnn_output_shape() -> None:
    cnn = CNN([8, 16, 16], num_classes=47, pooling=["max", "max", "none"], head_dims=[32])
    assert cnn(BATCH).shape == (5, 47)
    assert sum(isinstance(m, nn.Conv2d) for m in cnn.modules()) == 3


@pytest.mark.parametrize("hidden", [[], [64], [64, 32]])
def test_mlp_needs_three_hidden_layers(hidden: list[int]) -> None:
    with pytest.raises(ConfigError, match="at least 3"):
        MLP(hidden, num_classes=47)


def test_cnn_needs_two_conv_layers() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        CNN([8], num_classes=47)


def test_cnn_rejects_too_much_pooling() -> None:
    with pytest.raises(ConfigError, match="pooling"):
        CNN([4, 4, 4, 4, 4, 4], num_classes=47)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_used(name: str) -> None:
    for network in (MLP([16, 16, 16], 47, activation=name), CNN([4, 4], 47, activation=name)):
        assert ACTIVATIONS[name] in layer_types(network)
        others = set(ACTIVATIONS.values()) - {ACTIVATIONS[name]}
        assert not others & set(layer_types(network))


def test_unknown_activation() -> None:
    with pytest.raises(ConfigError, match="unknown activation 'swish'.*relu"):
        MLP([16, 16, 16], 47, activation="swish")


def test_batch_norm_switch() -> None:
    assert nn.BatchNorm1d in layer_types(MLP([16, 16, 16], 47, batch_norm=True))
    assert nn.BatchNorm1d not in layer_types(MLP([16, 16, 16], 47))
    assert nn.BatchNorm2d in layer_types(CNN([4, 4], 47, batch_norm=True))
    assert nn.BatchNorm2d not in layer_types(CNN([4, 4], 47))


def test_dropout_switch_and_per_layer_rates() -> None:
    assert nn.Dropout not in layer_types(MLP([16, 16, 16], 47))
    rates = [m.p for m in MLP([16, 16, 16], 47, dropout=[0.1, 0.0, 0.3]).modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.1, 0.3]
    assert nn.Dropout2d in layer_types(CNN([4, 4], 47, conv_dropout=0.2))
    assert nn.Dropout in layer_types(CNN([4, 4], 47, dropout=0.5))


def test_dropout_changes_training_outputs_only() -> None:
    mlp = MLP([32, 32, 32], 47, dropout=0.5)
    mlp.train()
    assert not torch.equal(mlp(BATCH), mlp(BATCH))
    mlp.eval()
    assert torch.equal(mlp(BATCH), mlp(BATCH))


def test_bad_dropout_rate() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        MLP([16, 16, 16], 47, dropout=1.0)


def test_per_layer_list_length_must_match() -> None:
    with pytest.raises(ConfigError, match="one per layer"):
        CNN([4, 4], 47, kernel_size=[3, 3, 3])
