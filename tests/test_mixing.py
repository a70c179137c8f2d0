"""mixup and CutMix (models/mixing.py): the images they make, and the loss scored against both labels."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.distillation import DistilledLoss
from emnist_lightning.models.losses import CrossEntropy, Targets
from emnist_lightning.models.mixing import CutMix, Mixup
from emnist_lightning.runs.config import compose
from emnist_lightning.training.build import build_model
from tests.conftest import quick_trainer, synthetic_datamodule

CLASSES = 5


def soft_labels(targets: Targets) -> torch.Tensor:
    """The mixed label as a probability per class, written out by hand."""
    first = F.one_hot(targets.labels, CLASSES).float()
    second = F.one_hot(targets.mixed_labels, CLASSES).float()
    return targets.share * first + (1 - targets.share) * second


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_of_a_mixed_batch_is_cross_entropy_against_the_mixed_label(smoothing: float) -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 0.3], [0.1, 0.2, 3.0, -0.5, 0.0], [1.0, 1.0, 1.0, 1.0, -2.0]])
    targets = Targets(torch.tensor([0, 2, 4]), torch.tensor([1, 2, 0]), share=0.7)
    loss = CrossEntropy(label_smoothing=smoothing, class_balanced=False)(logits, targets, torch.zeros(3, 1, 28, 28))
    # torch's cross-entropy against class probabilities, smoothed the same way
    expected = F.cross_entropy(logits, soft_labels(targets), label_smoothing=smoothing)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # an unmixed batch is the plain loss, and training accuracy counts the label with the larger share
    assert float(CrossEntropy(smoothing, False)(logits, Targets(targets.labels), logits)) == pytest.approx(
        float(F.cross_entropy(logits, targets.labels, label_smoothing=smoothing))
    )
    assert torch.equal(targets.dominant(), targets.labels)
    assert torch.equal(targets._replace(share=0.2).dominant(), targets.mixed_labels)


def test_mixup_averages_two_images_in_the_drawn_share() -> None:
    torch.manual_seed(0)
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 28, 28).contiguous()  # image i is all i
    labels = torch.tensor([0, 1, 2, 3])
    mixed, targets = Mixup(alpha=0.4, probability=1.0)(images, labels)
    partner = targets.mixed_labels  # image i was mixed with image `partner[i]` (labels are the image numbers)
    expected = targets.share * labels.float() + (1 - targets.share) * partner.float()
    assert torch.allclose(mixed[:, 0, 0, 0], expected)
    assert torch.equal(mixed, mixed[:, :, :1, :1].expand_as(mixed)), "every pixel mixed alike"
    assert sorted(partner.tolist()) == labels.tolist(), "the partners are a permutation of the batch"


def test_cutmix_pastes_a_box_whose_area_is_the_other_labels_share() -> None:
    torch.manual_seed(3)
    images, others = torch.zeros(2, 1, 28, 28), torch.ones(2, 1, 28, 28)
    for share in (0.9, 0.5, 0.1):
        mixed, kept = CutMix(alpha=1.0, probability=1.0).blend(images, others, share)
        pasted = mixed[0, 0]
        assert float(pasted.mean()) == pytest.approx(1 - kept)  # the share is the area actually kept
        rows, columns = pasted.nonzero(as_tuple=True)
        assert int(pasted.sum()) == (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1), "one box"


def test_unmixed_batches_pass_through_and_bad_strengths_are_refused() -> None:
    images, labels = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    same, targets = Mixup(alpha=0.2, probability=0.0)(images, labels)
    assert same is images and targets.mixed_labels is None
    for alpha, probability in ((0.0, 1.0), (-1.0, 1.0), (0.2, 1.5)):
        with pytest.raises(ConfigError, match="must be > 0 and probability"):
            CutMix(alpha=alpha, probability=probability)


def test_distillation_scores_a_mixed_batch_against_both_labels_and_the_teacher() -> None:
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, CLASSES))
    images = torch.rand(4, 1, 28, 28)
    targets = Targets(torch.tensor([0, 1, 2, 3]), torch.tensor([4, 3, 2, 1]), share=0.6)
    loss = DistilledLoss(teacher, temperature=2.0, weight=0.25, label_smoothing=0.1, class_balanced=False)
    loss.prepare(torch.device("cpu"), SimpleNamespace(mean=0.0, std=1.0))
    logits = torch.randn(4, CLASSES)
    hard = F.cross_entropy(logits, soft_labels(targets), label_smoothing=0.1)
    expected = 0.75 * hard + 0.25 * loss.soft_loss(logits, images)
    assert float(loss(logits, targets, images)) == pytest.approx(float(expected), rel=1e-6)


FOCAL_LOSS = '''
import torch.nn.functional as F

from emnist_lightning.models.losses import CrossEntropy


class FocalLoss(CrossEntropy):
    """Cross-entropy that weighs each image by (1 - p_true)^gamma: hard images count more."""

    def __init__(self, gamma: float, label_smoothing: float, class_balanced: bool) -> None:
        super().__init__(label_smoothing, class_balanced)
        self.gamma = gamma

    def __call__(self, logits, targets, images):
        def focal(labels):
            per_image = F.cross_entropy(logits, labels, reduction="none")
            return ((1 - (-per_image).exp()) ** self.gamma * per_image).mean()

        return targets.mean_over(focal)
'''
FOCAL_YAML = """
defaults:
  - cross_entropy
_target_: my_losses.FocalLoss
gamma: 2.0
"""


def test_a_new_loss_is_one_python_file_and_one_yaml(
    tmp_path: Path, synthetic_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example: a loss written outside the package, found by Hydra through its search path,
    trains with mixup and nothing else changed."""
    (tmp_path / "my_losses.py").write_text(FOCAL_LOSS)
    (tmp_path / "conf" / "loss").mkdir(parents=True)
    (tmp_path / "conf" / "loss" / "focal.yaml").write_text(FOCAL_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose(
        "train",
        [
            "loss=focal",
            "mixing=mixup",
            "model.hidden_dims=[16,16,16]",
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        ],
        tmp_path / "run",
    )
    datamodule = synthetic_datamodule(synthetic_dir, batch_size=32)
    model = build_model(cfg, datamodule)
    assert type(model.loss).__name__ == "FocalLoss" and model.loss.gamma == 2.0
    quick_trainer(tmp_path).fit(model, datamodule=datamodule)
    assert torch.isfinite(torch.tensor(model.trainer.callback_metrics["train/loss"].item()))
