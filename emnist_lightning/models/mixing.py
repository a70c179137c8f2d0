"""Label-mixing regularizers (conf/mixing/): each training batch is blended with a shuffled copy of itself,
and the loss is scored against both label sets in proportion (`Targets`). Unlike augmentation (data/augment.py)
they change the labels, so they run in the training step, after augmentation."""

from __future__ import annotations

import torch

from emnist_lightning.errors import ConfigError
from emnist_lightning.models.losses import Targets


class BatchMixing:
    """Mix a batch with a permutation of itself with probability `probability`; the mixing share is drawn
    from Beta(alpha, alpha) (small alpha: mostly one image; 1: uniform)."""

    def __init__(self, alpha: float, probability: float) -> None:
        if not alpha > 0 or not 0 <= probability <= 1:
            raise ConfigError(
                f"mixing: alpha={alpha} must be > 0 and probability={probability} in [0, 1] (e.g. mixing.alpha=0.2)"
            )
        self.alpha, self.probability = alpha, probability
        self.share = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Targets]:
        if self.probability < 1 and torch.rand(()).item() >= self.probability:
            return images, Targets(labels)
        order = torch.randperm(len(images), device=images.device)
        mixed, share = self.blend(images, images[order], float(self.share.sample()))
        return mixed, Targets(labels, labels[order], share)

    def blend(self, images: torch.Tensor, others: torch.Tensor, share: float) -> tuple[torch.Tensor, float]:
        """The mixed images and the share of `images` in them."""
        raise NotImplementedError


class Mixup(BatchMixing):
    """mixup (Zhang et al., 2018): a weighted average of two images, `share * x + (1 - share) * x'`."""

    def blend(self, images: torch.Tensor, others: torch.Tensor, share: float) -> tuple[torch.Tensor, float]:
        return images.lerp(others, 1 - share), share


class CutMix(BatchMixing):
    """CutMix (Yun et al., 2019): a box of the other image pasted in, of area `1 - share` of the image,
    centred anywhere; the share is the area actually kept after the box is clipped at the borders."""

    def blend(self, images: torch.Tensor, others: torch.Tensor, share: float) -> tuple[torch.Tensor, float]:
        height, width = images.shape[-2:]
        side = (1 - share) ** 0.5
        box_h, box_w = round(height * side), round(width * side)
        centre_y, centre_x = (int(torch.randint(size, ())) for size in (height, width))
        top, bottom = max(centre_y - box_h // 2, 0), min(centre_y + (box_h + 1) // 2, height)
        left, right = max(centre_x - box_w // 2, 0), min(centre_x + (box_w + 1) // 2, width)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = others[..., top:bottom, left:right]
        return mixed, 1 - (bottom - top) * (right - left) / (height * width)
