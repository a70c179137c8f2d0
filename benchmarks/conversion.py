"""What predict.py's conversion of a picture costs in accuracy: held-out test images rendered as a user brings
them, read through the conversion, against the same images read as 28x28 arrays, paired image by image.

    python benchmarks/conversion.py CKPT [--images 2000] [--data-dir DIR]

Each condition renders every image upright as dark ink on paper: resized to a side drawn from its range
(bicubic), strokes thickened or not, placed off-centre on a larger page, on white or on grey, noisy paper.
The table gives accuracy on the arrays and on the renders, their difference with the 95% interval of
McNemar's exact test (analysis/statistics.py) and its p-value: the target is a loss of at most 1 point.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from emnist_lightning.analysis.statistics import mcnemar_exact
from emnist_lightning.data import emnist_split
from emnist_lightning.data.files import load_split
from emnist_lightning.inference.images import picture_sample
from emnist_lightning.inference.models import load_pixel_model, open_predictor


@dataclass(frozen=True)
class Condition:
    name: str
    sides: tuple[int, int]  # the character's rendered side, drawn uniformly in this range
    thicken: int = 0  # MinFilter size (dark strokes grow): 0 = as drawn
    grey_paper: bool = False  # paper at 170-235 with noise, as a photo of paper gives


CONDITIONS = [
    Condition("64-160 px", (64, 160)),
    Condition("160-512 px", (160, 512)),
    Condition("64-512 px, thick strokes", (64, 512), thicken=5),
    Condition("64-512 px, grey noisy paper", (64, 512), grey_paper=True),
]


def render(upright: np.ndarray, condition: Condition, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 EMNIST image as a user's picture: grey levels in [0, 1], dark ink."""
    side = int(rng.integers(condition.sides[0], condition.sides[1] + 1))
    drawn = Image.fromarray(255 - upright).resize((side, side), Image.BICUBIC)
    if condition.thicken:
        drawn = drawn.filter(ImageFilter.MinFilter(condition.thicken))
    left, top, right, bottom = (int(margin) for margin in rng.integers(0, side // 2 + 1, 4))
    page = Image.new("L", (side + left + right, side + top + bottom), 255)
    page.paste(drawn, (left, top))
    picture = np.asarray(page, dtype=np.float32) / 255
    if condition.grey_paper:
        paper = rng.uniform(170, 235) / 255
        picture = picture * paper + rng.normal(0, 0.02, picture.shape).astype(np.float32)
    return picture.clip(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a train.py checkpoint")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data-dir", default=os.environ.get("EMNIST_DATA_DIR", "data/emnist"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    predictor = open_predictor(args.checkpoint)
    split = emnist_split(load_pixel_model(args.checkpoint).split)  # Balanced and ByMerge share their classes
    test = load_split(Path(args.data_dir), split, "test")
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.images]
    images, labels = test.images[chosen], test.labels[chosen]
    as_arrays = predictor.logits(images.float() / 255).argmax(dim=1) == labels
    print(f"{args.checkpoint}: EMNIST {split.name}, {len(labels)} held-out test images (stand-in where the data is)")
    print("| renders | arrays acc | renders acc | renders - arrays [95%] | p (McNemar) |")
    print("| --- | --- | --- | --- | --- |")
    for condition in CONDITIONS:
        rng = np.random.default_rng(args.seed)
        views = torch.cat(
            [
                picture_sample(render(image, condition, rng), f"{i}").views
                for i, image in enumerate(images[:, 0].numpy())
            ]
        )
        rendered = predictor.logits(views).argmax(dim=1) == labels
        paired = mcnemar_exact(as_arrays.numpy(), rendered.numpy())
        low, high = paired.interval.as_list()
        print(
            f"| {condition.name} | {as_arrays.float().mean():.2%} | {rendered.float().mean():.2%} | "
            f"{paired.difference * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}] points | {paired.p_value:.3g} |"
        )


if __name__ == "__main__":
    main()
