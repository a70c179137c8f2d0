"""The six EMNIST splits: their files, classes, labels and official sizes (Cohen et al. 2017).

A split's classes are built in, because torchvision's download keeps the image and label files but not
the mapping files; a mapping file that is present is checked against them (data/files.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from emnist_lightning.errors import ConfigError

TITLES = {"byclass": "ByClass", "bymerge": "ByMerge", "mnist": "MNIST"}
DIGITS = tuple("0123456789")
UPPER = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
LOWER = tuple("abcdefghijklmnopqrstuvwxyz")
# Balanced and ByMerge merge the 15 lower-case letters that look like their capitals (c i j k l m o p s
# u v w x y z) into them.
MERGED_LOWER = tuple("abdefghnqrt")


def letter_class(upper: str, lower: str) -> str:
    """The name of a Letters class, which holds both cases: 'A/a'."""
    return f"{upper}/{lower}"


@dataclass(frozen=True)
class EMNISTSplit:
    """One EMNIST split: label `first_label + i` in its files is class `classes[i]`."""

    name: str
    classes: tuple[str, ...]
    official_train: int
    official_test: int
    first_label: int = 0  # Letters labels its classes 1..26

    @property
    def title(self) -> str:
        """The split's name as the EMNIST paper writes it: ByClass, Balanced, MNIST."""
        return TITLES.get(self.name, self.name.capitalize())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def official_count(self, stage: str) -> int:
        return {"train": self.official_train, "test": self.official_test}[stage]

    def file_names(self, stage: str) -> tuple[str, str]:
        """The official (images, labels) file names of `stage` ('train' or 'test'), without '.gz'."""
        return (f"emnist-{self.name}-{stage}-images-idx3-ubyte", f"emnist-{self.name}-{stage}-labels-idx1-ubyte")

    @property
    def mapping_file(self) -> str:
        return f"emnist-{self.name}-mapping.txt"

    @property
    def required_files(self) -> list[str]:
        return [name for stage in ("train", "test") for name in self.file_names(stage)]


SPLITS: dict[str, EMNISTSplit] = {
    split.name: split
    for split in (
        EMNISTSplit("byclass", DIGITS + UPPER + LOWER, 697_932, 116_323),
        EMNISTSplit("bymerge", DIGITS + UPPER + MERGED_LOWER, 697_932, 116_323),
        EMNISTSplit("balanced", DIGITS + UPPER + MERGED_LOWER, 112_800, 18_800),
        EMNISTSplit("letters", tuple(map(letter_class, UPPER, LOWER)), 124_800, 20_800, first_label=1),
        EMNISTSplit("digits", DIGITS, 240_000, 40_000),
        EMNISTSplit("mnist", DIGITS, 60_000, 10_000),
    )
}


def emnist_split(name: str) -> EMNISTSplit:
    """The split called `name`; one clear error for any other name."""
    split = SPLITS.get(str(name).lower())
    if split is None:
        raise ConfigError(f"data.split={name!r} is not an EMNIST split; choose one of {', '.join(SPLITS)}")
    return split
