"""The ResNet family, added as a plug-in: its module and conf/model/resnet.yaml are all it took."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from emnist_lightning.errors import ConfigError
from emnist_lightning.models import NETWORKS, EMNISTClassifier, load_classifier
from emnist_lightning.models.losses import WeightPenalty
from emnist_lightning.training.figure_callbacks import ModelPictures
from tests.conftest import configured_settings, model_arguments, network_arguments, quick_trainer, synthetic_datamodule

SMALL = {"widths": [8, 16], "blocks_per_stage": 1}


def test_resnet_is_registered_and_maps_images_to_logits() -> None:
    network = NETWORKS["resnet"](**network_arguments("resnet"), num_classes=47)
    assert network(torch.rand(5, 1, 28, 28)).shape == (5, 47)
    blocks = [module for module in network.modules() if type(module).__name__ == "ResidualBlock"]
    assert len(blocks) == 3 * 2  # three stages of two blocks (conf/model/resnet.yaml)


def test_l1_and_l2_apply_to_conv_and_linear_weights_only() -> None:
    model = EMNISTClassifier(**model_arguments("resnet", **SMALL), penalty=WeightPenalty(l1=0.0, l2=1e-3))
    penalized = {id(weight) for weight in model.penalized_weights()}
    layers = [m for m in model.network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert penalized == {id(layer.weight) for layer in layers}
    norms = [m for m in model.network.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not penalized & {id(p) for norm in norms for p in norm.parameters()}
    expected = 1e-3 * sum(layer.weight.square().sum() for layer in layers)
    assert torch.allclose(model.penalty(model.penalized_weights(), model.device), expected)


def test_resnet_trains_draws_its_pictures_and_reloads(synthetic_dir: Path, tmp_path: Path) -> None:
    model = EMNISTClassifier(**model_arguments("resnet", **SMALL), optimizer=torch.optim.Adam)
    pictures = ModelPictures(tmp_path, **configured_settings("callbacks.model_pictures"))
    trainer = quick_trainer(tmp_path, callbacks=[pictures])
    datamodule = synthetic_datamodule(synthetic_dir, batch_size=32)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, datamodule=datamodule)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)), "nothing trained"
    trainer.test(model, datamodule=datamodule, verbose=False)
    for picture in ("model_filters.png", "feature_maps.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"
    trainer.save_checkpoint(tmp_path / "resnet.ckpt")
    reloaded = load_classifier(tmp_path / "resnet.ckpt").eval()
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(reloaded(images), model.eval()(images))


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"widths": []}, "builds no residual block"), ({"widths": [8, 8, 8, 8]}, "fits at most 3")],
)
def test_shapes_that_cannot_work_are_config_errors(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EMNISTClassifier(**model_arguments("resnet", **settings))
