"""Both model families: shapes, layer-count rules, and that every switch changes the network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.networks import ACTIVATIONS, CNN, MLP, NETWORKS, build_network
from tests.conftest import network_arguments

BATCH = torch.randn(5, 1, 28, 28)


def mlp(**overrides) -> MLP:
    """The plain MLP preset (conf/model/mlp.yaml), changed by `overrides`."""
    return MLP(**network_arguments("mlp", **overrides), num_classes=47)


def cnn(**overrides) -> CNN:
    """The plain CNN preset (conf/model/cnn_plain.yaml), changed by `overrides`."""
    return CNN(**network_arguments("cnn_plain", **overrides), num_classes=47)


def layer_types(network: nn.Module) -> list[type]:
    return [type(m) for m in network.modules()]


def test_mlp_output_shape_and_depth() -> None:
    network = mlp(hidden_dims=[64, 32, 16, 8])
    assert network(BATCH).shape == (5, 47)
    assert sum(isinstance(m, nn.Linear) for m in network.modules()) == 5


def test_cnn_output_shape() -> None:
    network = cnn(channels=[8, 16, 16], pooling=["max", "max", "none"], head_dims=[32])
    assert network(BATCH).shape == (5, 47)
    assert sum(isinstance(m, nn.Conv2d) for m in network.modules()) == 3


@pytest.mark.parametrize("hidden", [[], [64], [64, 32]])
def test_mlp_needs_three_hidden_layers(hidden: list[int]) -> None:
    with pytest.raises(ConfigError, match="at least 3"):
        mlp(hidden_dims=hidden)


def test_cnn_needs_two_conv_layers() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        cnn(channels=[8])


@pytest.mark.parametrize("per_block", [[1], [0, 2], 0])
def test_cnn_needs_one_conv_a_block(per_block: int | list[int]) -> None:
    with pytest.raises(ConfigError, match="convs_per_block"):
        cnn(channels=[8, 8], convs_per_block=per_block)


def test_each_block_may_have_its_own_conv_count() -> None:
    network = cnn(channels=[4, 8, 16], convs_per_block=[1, 2, 2])
    assert [m.out_channels for m in network.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 8, 16, 16]


def test_cnn_rejects_too_much_pooling() -> None:
    with pytest.raises(ConfigError, match="pooling"):
        cnn(channels=[4, 4, 4, 4, 4, 4])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_used(name: str) -> None:
    for network in (mlp(hidden_dims=[16, 16, 16], activation=name), cnn(channels=[4, 4], activation=name)):
        assert ACTIVATIONS[name] in layer_types(network)
        others = set(ACTIVATIONS.values()) - {ACTIVATIONS[name]}
        assert not others & set(layer_types(network))


def test_unknown_activation() -> None:
    with pytest.raises(ConfigError, match="unknown activation 'swish'.*relu"):
        mlp(activation="swish")


def test_batch_norm_switch() -> None:
    assert nn.BatchNorm1d in layer_types(mlp(batch_norm=True))
    assert nn.BatchNorm1d not in layer_types(mlp())
    assert nn.BatchNorm2d in layer_types(cnn(channels=[4, 4], batch_norm=True))
    assert nn.BatchNorm2d not in layer_types(cnn(channels=[4, 4]))


def test_dropout_switch_and_per_layer_rates() -> None:
    assert nn.Dropout not in layer_types(mlp())
    rates = [m.p for m in mlp(hidden_dims=[16, 16, 16], dropout=[0.1, 0.0, 0.3]).modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.1, 0.3]
    assert nn.Dropout2d in layer_types(cnn(channels=[4, 4], conv_dropout=0.2))
    assert nn.Dropout in layer_types(cnn(channels=[4, 4], dropout=0.5))


def test_dropout_changes_training_outputs_only() -> None:
    network = mlp(hidden_dims=[32, 32, 32], dropout=0.5)
    network.train()
    assert not torch.equal(network(BATCH), network(BATCH))
    network.eval()
    assert torch.equal(network(BATCH), network(BATCH))


def test_bad_dropout_rate() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        mlp(dropout=1.0)


def test_per_layer_list_length_must_match() -> None:
    with pytest.raises(ConfigError, match="one per layer"):
        cnn(channels=[4, 4], kernel_size=[3, 3, 3])


def test_registry_builds_each_family_by_name() -> None:
    for name, family in NETWORKS.items():
        network = build_network(name, 47, **network_arguments(name))
        assert type(network) is family
        assert network(BATCH).shape == (5, 47)


def test_unknown_network_and_wrong_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="model.network='rnn' is unknown; choose one of: cnn, mlp"):
        build_network("rnn", 47)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'channels'.*conf/model/mlp.yaml"):
        build_network("mlp", 47, **network_arguments("mlp"), channels=[8, 8])
    with pytest.raises(ConfigError, match="missing 1 required keyword-only argument: 'dropout'"):
        build_network("mlp", 47, hidden_dims=[8, 8, 8], activation="relu", batch_norm=False)


def test_channels_last_cnn_matches_the_standard_layout() -> None:
    torch.manual_seed(0)
    standard = cnn(channels=[4, 8], channels_last=False)
    nhwc = cnn(channels=[4, 8], channels_last=True)
    nhwc.load_state_dict(standard.state_dict())
    conv = next(m for m in nhwc.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(nhwc(BATCH), standard(BATCH), atol=1e-5)
