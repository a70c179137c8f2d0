"""A user's images as the model's 28x28 inputs, through EMNIST's own conversion.

EMNIST (Cohen et al., 2017) made its images from scans of handwriting: a Gaussian blur, a crop to the
ink's bounding box, centred in a square frame keeping the aspect ratio, a 2-pixel border, a bicubic resize
to 28x28 and the brightest pixel scaled to full intensity, white ink on black. A photo or a drawing that
skips these steps looks nothing like the training data (thin strokes, off-centre, dark ink), which is why
most EMNIST demos fail on real handwriting; `emnist_view` applies the same steps.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from emnist_lightning.data import idx
from emnist_lightning.data.files import read_upright_images
from emnist_lightning.errors import ConfigError, UserError
from emnist_lightning.inference.segment import split_characters

SIDE = idx.IMAGE_SIDE
INK_SIDE = SIDE - 4  # the ink's longer side fills the frame but for a 2-pixel border
BLUR_SIGMA = 1.0  # pixels of the input, as EMNIST blurred its scans
# Ink is where the blurred image is brighter than this share of its brightest pixel. So measured, the
# ink of EMNIST's own images spans 24 pixels on its longer side, centred at 13.5 (median and means of
# 3,000 stand-in training images), which is what the conversion below reproduces.
INK_THRESHOLD = 0.05
# Less contrast than this between ink and paper (on a 0..1 scale) is taken for an empty image.
MIN_CONTRAST = 0.15
# Larger images are scaled down to this side first: a character needs far fewer pixels, and a 10,000-pixel
# photo would otherwise cost gigabytes in the blur.
MAX_SIDE = 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# The decoders Pillow may use, whatever a file's name or first bytes claim: an EPS renamed .png would
# otherwise reach Ghostscript where it is installed.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP")
# An array file holding more is refused before it is read (its header says how many): 100,000 28x28
# images are 300 MB as floats.
MAX_ARRAY_IMAGES = 100_000
ARRAY_SUFFIXES = (".npy", "-ubyte", "-ubyte.gz", ".idx", ".idx.gz")


class InputError(UserError):
    """One input that cannot be predicted (unreadable, not an image, no ink); the others still are."""


@dataclass
class Sample:
    """One image to predict: where it came from, the picture as given (grey, 0..1) and what the model sees,
    one view per character (several when a word was split)."""

    name: str
    picture: np.ndarray
    views: torch.Tensor  # (characters, 1, 28, 28) floats in [0, 1], white ink on black, upright


def find_inputs(spec: str) -> list[Path]:
    """The files `inputs=` names: one file, every image or array in a folder (sorted), or a glob."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and has_suffix(p, IMAGE_SUFFIXES + ARRAY_SUFFIXES))
        if not files:
            raise ConfigError(f"inputs={spec}: the folder holds no PNG, JPEG, BMP, .npy or IDX files")
        return files
    if path.is_file():
        return [path]
    files = sorted(Path(match) for match in glob.glob(str(path), recursive=True) if Path(match).is_file())
    if not files:
        raise ConfigError(f"inputs={spec}: no such file or folder, and no file matches it as a pattern")
    return files


def has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def read_samples(path: Path, segment: bool = False) -> Iterator[Sample]:
    """The samples in one file: one per image file (its characters' views when `segment`), one per 28x28
    image in an array file."""
    if has_suffix(path, ARRAY_SUFFIXES):
        views = read_array(path)
        for index, view in enumerate(views):
            yield Sample(f"{path.name}[{index}]" if len(views) > 1 else path.name, view[0].numpy(), view[None])
        return
    yield picture_sample(read_picture(path), path.name, segment, source=str(path))


def picture_sample(picture: np.ndarray, name: str, segment: bool = False, source: str | None = None) -> Sample:
    """A picture through EMNIST's conversion: one view, or one per character of a word when `segment`.
    Errors name `source` (the file), or else `name`."""
    ink = ink_image(picture, source or name)
    characters = split_characters(ink) if segment else [ink]
    return Sample(name, picture, torch.stack([emnist_view(character) for character in characters]))


def read_picture(source: Path | BinaryIO, name: str | None = None) -> np.ndarray:
    """An image file (or its bytes) as grey levels in [0, 1]; transparent parts count as white paper."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = name or str(source)
    try:
        with warnings.catch_warnings():
            # Large photos are fine (PIL refuses only images of over 179 million pixels): they are scaled down.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=IMAGE_FORMATS)
        with image:
            image = ImageOps.exif_transpose(image)  # photos from phones are often stored rotated
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
            grey = grey_on_white(image)
    except UnidentifiedImageError as err:
        raise InputError(f"{path}: not a PNG, JPEG or BMP image; save it in one of those formats") from err
    except Image.DecompressionBombError as err:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise InputError(f"{path}: too large to open safely (over {limit:,} pixels); scale it down") from err
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err})") from err
    return large_enough(grey, path)


def grey_on_white(image: Any) -> np.ndarray:
    """A PIL image as grey levels in [0, 1]; transparent parts count as white paper. 16-bit grey levels are
    scaled, not clipped (Pillow's 8-bit conversion would turn every level above 255 white)."""
    from PIL import Image

    if image.mode.startswith("I"):  # 16-bit grey (I;16, I;16B) or 32-bit integers holding 16-bit levels
        return np.asarray(image, dtype=np.float32).clip(0, 65535) / 65535
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def large_enough(grey: np.ndarray, name: str) -> np.ndarray:
    if min(grey.shape) < 2:
        raise InputError(f"{name}: the image is {grey.shape[1]}x{grey.shape[0]} pixels, too small to hold a character")
    return grey


def read_array(path: Path) -> torch.Tensor:
    """28x28 images from .npy (upright) or IDX (stored transposed, as EMNIST's files are), as they are:
    (N, 1, 28, 28) floats in [0, 1]."""
    try:
        if path.name.endswith(".npy"):
            check_image_count(path, npy_image_count(path))  # from the header, before anything is allocated
            images = torch.from_numpy(np.ascontiguousarray(np.load(path, allow_pickle=False)))
        else:
            images = read_upright_images(path)
            check_image_count(path, len(images))
    except (ValueError, TypeError, OSError, UserError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: not a readable .npy or IDX image array ({err})") from err
    if images.shape[-2:] != (SIDE, SIDE) or images.ndim not in (2, 3, 4) or (images.ndim == 4 and images.shape[1] != 1):
        raise InputError(f"{path}: holds an array of shape {tuple(images.shape)}; expected 28x28 images, (N, 28, 28)")
    floats = images.float().reshape(-1, 1, SIDE, SIDE)
    return floats / 255 if images.dtype == torch.uint8 or floats.max() > 1 else floats


def npy_image_count(path: Path) -> int:
    """How many 28x28 images a .npy file's header says it holds."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version not in readers:
            raise ValueError(f".npy format version {version[0]}.{version[1]} (1.0 or 2.0 expected)")
        shape, _, _ = readers[version](file)
    return int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) >= 2 else 0


def check_image_count(path: Path, count: int) -> None:
    if count == 0:
        raise InputError(f"{path}: the array holds no images")
    if count > MAX_ARRAY_IMAGES:
        raise InputError(f"{path}: holds {count:,} images, more than {MAX_ARRAY_IMAGES:,}; split it into smaller files")


def ink_image(grey: np.ndarray, name: str = "image") -> torch.Tensor:
    """Grey levels -> ink as 1 on a background of 0, whichever way round the image is.

    The paper is what the image's border mostly shows: light paper means dark ink, which is inverted.
    Paper that is not pure white (a photo) is brought to 0 and the darkest ink to 1.
    """
    image = torch.as_tensor(grey, dtype=torch.float32)
    border = torch.cat([image[0], image[-1], image[:, 0], image[:, -1]])
    if border.median() > 0.5:
        image, border = 1 - image, 1 - border
    paper = border.median()
    contrast = image.max() - paper
    if contrast < MIN_CONTRAST:
        raise InputError(f"{name}: no ink found (the image is nearly one shade)")
    return ((image - paper) / contrast).clamp_(0, 1)


def emnist_view(ink: torch.Tensor) -> torch.Tensor:
    """Ink on black (H, W) -> the (1, 28, 28) image EMNIST's conversion would make of it."""
    blurred = gaussian_blur(ink[None, None], kernel_size=5, sigma=BLUR_SIGMA)[0, 0]
    rows, columns = (blurred > INK_THRESHOLD * blurred.max()).nonzero(as_tuple=True)
    cropped = blurred[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = cropped.shape
    # A square frame around the ink, with room for the border: the longer side becomes INK_SIDE pixels.
    frame = round(max(height, width) * SIDE / INK_SIDE)
    top, left = (frame - height) // 2, (frame - width) // 2
    framed = F.pad(cropped, (left, frame - width - left, top, frame - height - top))
    view = F.interpolate(framed[None, None], size=(SIDE, SIDE), mode="bicubic", antialias=True, align_corners=False)
    view = view[0].clamp_(0, 1)
    return view / view.max()


def read_all(paths: list[Path], segment: bool) -> tuple[list[Sample], dict[str, str]]:
    """Every readable sample, and one line for each file that is not."""
    samples, failures = [], {}
    for path in paths:
        try:
            samples.extend(read_samples(path, segment))
        except InputError as err:
            print(f"skipped: {err}")
            failures[str(path)] = str(err)
    return samples, failures
