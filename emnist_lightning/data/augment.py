"""Training-batch augmentation as whole-batch tensor ops, on whatever device the batch is on.

Every image of a batch gets its own random warp (shift, rotation, zoom, shear and an elastic
distortion, composed into one sampling grid and applied by one `grid_sample`) and, optionally, a
random rectangle erased. Random numbers come from torch's global generator of the batch's device,
which `seed_everything` seeds and checkpoints restore, so augmented runs repeat and resume exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emnist_lightning.errors import ConfigError

ERASE_MIN_AREA = 0.02  # the smallest erased rectangle, as a fraction of the image
ERASE_ASPECT = (0.3, 3.3)  # height/width range of erased rectangles, as torchvision's RandomErasing


class BatchAugment(nn.Module):
    """Random label-preserving distortions of (N, 1, H, W) float images whose background is 0.

    Strengths of 0 switch a distortion off; all 0 is the identity. Flips are refused: a mirrored
    handwritten character is often another class (b and d, p and q, 2 and S).
    """

    def __init__(
        self,
        *,
        max_shift: int,
        degrees: float,
        scale: float,
        shear: float,
        elastic_alpha: float,
        elastic_sigma: float,
        erase_prob: float,
        erase_max_area: float,
        hflip: bool,
        vflip: bool,
    ) -> None:
        super().__init__()
        if hflip or vflip:
            raise ConfigError(
                "augment.hflip/vflip: flipping changes a character's class (a mirrored b is a d); "
                "use shift, rotation, zoom, shear, elastic or erasing instead"
            )
        for name, value in (("max_shift", max_shift), ("degrees", degrees), ("shear", shear)):
            if value < 0:
                raise ConfigError(f"augment.{name}={value} must be >= 0 (0 switches it off)")
        if not 0 <= scale < 1:
            raise ConfigError(f"augment.scale={scale} must be in [0, 1): zoom is drawn from [1 - scale, 1 + scale]")
        if elastic_alpha < 0 or elastic_sigma <= 0:
            raise ConfigError(
                f"augment.elastic_alpha={elastic_alpha} must be >= 0 and augment.elastic_sigma={elastic_sigma} > 0"
            )
        if not 0 <= erase_prob <= 1 or not ERASE_MIN_AREA <= erase_max_area <= 1:
            raise ConfigError(
                f"augment.erase_prob={erase_prob} must be in [0, 1] and "
                f"augment.erase_max_area={erase_max_area} in [{ERASE_MIN_AREA}, 1]"
            )
        self.max_shift = int(max_shift)
        self.degrees, self.scale, self.shear = degrees, scale, shear
        self.elastic_alpha, self.elastic_sigma = elastic_alpha, elastic_sigma
        self.erase_prob, self.erase_max_area = erase_prob, erase_max_area

    @property
    def warps(self) -> bool:
        return any((self.max_shift, self.degrees, self.scale, self.shear, self.elastic_alpha))

    @property
    def is_identity(self) -> bool:
        return not self.warps and self.erase_prob == 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.warps:
            images = F.grid_sample(images, self.sampling_grid(images), mode="bilinear", align_corners=False)
        if self.erase_prob > 0:
            images = images * ~self.erase_masks(images)
        return images

    def sampling_grid(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 2) input coordinates in [-1, 1] for every output pixel: affine, plus elastic."""
        grid = F.affine_grid(self.affine_matrices(images), list(images.shape), align_corners=False)
        if self.elastic_alpha > 0:
            grid = grid + self.elastic_displacement(images)
        return grid

    def affine_matrices(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 2, 3) random affine maps in grid_sample's normalised coordinates."""
        n, device = len(images), images.device

        def uniform(limit: float) -> torch.Tensor:
            return (torch.rand(n, device=device) * 2 - 1) * limit

        angle = torch.deg2rad(uniform(self.degrees))
        shear = torch.deg2rad(uniform(self.shear))
        zoom = 1 + uniform(self.scale)
        cos, sin, slant = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # rotation @ shear (x' = x + tan(shear) * y), then scaled: the map from output to input pixels
        rows = [torch.stack([cos, cos * slant - sin], -1), torch.stack([sin, sin * slant + cos], -1)]
        linear = torch.stack(rows, dim=1) / zoom.view(n, 1, 1)
        # whole-pixel shifts, so that a shift alone moves pixels without blurring them
        pixels = torch.randint(-self.max_shift, self.max_shift + 1, (n, 2), device=device).to(images.dtype)
        translation = pixels * grid_units_per_pixel(images)
        return torch.cat([linear.to(images.dtype), translation.unsqueeze(2)], dim=2)

    def elastic_displacement(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 2) smooth random displacements (Simard et al., 2003): uniform noise blurred by a
        Gaussian of `elastic_sigma` pixels, scaled by `elastic_alpha` pixels."""
        n, _, height, width = images.shape
        noise = torch.rand(n, 2, height, width, device=images.device, dtype=images.dtype) * 2 - 1
        radius = min(math.ceil(3 * self.elastic_sigma), max(height, width) // 2)
        offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
        kernel = torch.exp(-(offsets**2) / (2 * self.elastic_sigma**2))
        kernel = kernel / kernel.sum()
        # separable blur of both displacement channels: rows, then columns
        noise = F.conv2d(noise, kernel.view(1, 1, 1, -1).expand(2, 1, 1, -1), padding=(0, radius), groups=2)
        noise = F.conv2d(noise, kernel.view(1, 1, -1, 1).expand(2, 1, -1, 1), padding=(radius, 0), groups=2)
        return noise.permute(0, 2, 3, 1) * self.elastic_alpha * grid_units_per_pixel(images)

    def erase_masks(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) True inside one random rectangle, for each image chosen with `erase_prob`."""
        n, _, height, width = images.shape
        device = images.device
        area = (ERASE_MIN_AREA + torch.rand(n, device=device) * (self.erase_max_area - ERASE_MIN_AREA)) * height * width
        low, high = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
        aspect = torch.exp(low + torch.rand(n, device=device) * (high - low))
        box_h = (area * aspect).sqrt().round().clamp(1, height)
        box_w = (area / aspect).sqrt().round().clamp(1, width)
        top = (torch.rand(n, device=device) * (height - box_h + 1)).floor()
        left = (torch.rand(n, device=device) * (width - box_w + 1)).floor()
        chosen = torch.rand(n, device=device) < self.erase_prob
        rows = torch.arange(height, device=device).view(1, height, 1)
        columns = torch.arange(width, device=device).view(1, 1, width)
        inside = (
            (rows >= top.view(n, 1, 1))
            & (rows < (top + box_h).view(n, 1, 1))
            & (columns >= left.view(n, 1, 1))
            & (columns < (left + box_w).view(n, 1, 1))
        )
        return (inside & chosen.view(n, 1, 1)).unsqueeze(1)


def grid_units_per_pixel(images: torch.Tensor) -> torch.Tensor:
    """(x, y) size of one pixel in grid_sample's coordinates, which span [-1, 1] across the image."""
    height, width = images.shape[-2:]
    return 2 / torch.tensor([width, height], device=images.device, dtype=images.dtype)


def shifted_views(images: torch.Tensor, max_shift: int) -> list[torch.Tensor]:
    """The images and their whole-pixel shifts by up to `max_shift` left, right, up and down, for
    test-time augmentation. `roll` wraps pixels around, which is harmless on EMNIST for shifts of up
    to 2: its characters are centred with a blank border of 2 pixels, so only background wraps."""
    views = [images]
    for distance in range(1, max_shift + 1):
        for shift, dim in ((distance, -1), (-distance, -1), (distance, -2), (-distance, -2)):
            views.append(torch.roll(images, shift, dim))
    return views
