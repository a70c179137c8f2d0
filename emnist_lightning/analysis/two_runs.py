"""Two runs compared image by image (`emnist-compare <run A> <run B>`, cli/compare.py): McNemar's exact
test on their test predictions, the per-class differences, and the characters one reads and the other
does not, as pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from emnist_lightning.analysis.predictions import HeldOutPredictions
from emnist_lightning.analysis.statistics import mcnemar_exact, verdict
from emnist_lightning.atomic import write_atomically
from emnist_lightning.data import emnist_split
from emnist_lightning.data.files import load_split
from emnist_lightning.errors import ConfigError, DataError
from emnist_lightning.pictures import plots
from emnist_lightning.runs.provenance import differences
from emnist_lightning.runs.record import RunRecord

EXAMPLES = 16  # images drawn per direction


def per_class_accuracy(run: HeldOutPredictions) -> pd.Series:
    frame = pd.DataFrame({"label": run.labels, "correct": run.correct})
    accuracy = frame.groupby("label")["correct"].mean()
    return accuracy.reindex(range(len(run.classes))).set_axis(run.classes)


def held_out_images(run_dir: Path) -> np.ndarray | None:
    """The run's test images (upright, uint8), read from the files its config names, or None when they
    are not there any more."""
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    data = OmegaConf.load(config).get("data") or {}
    try:
        split = emnist_split(str(data.get("split")))
        return load_split(Path(str(data.get("data_dir"))).expanduser(), split, "test").images[:, 0].numpy()
    except (DataError, ConfigError, OSError, TypeError):
        return None


def examples_figure(
    images: np.ndarray, first: HeldOutPredictions, second: HeldOutPredictions, wanted: np.ndarray, title: str
):
    chosen, names = np.flatnonzero(wanted)[:EXAMPLES], first.classes
    captions = [
        f"{names[first.labels[i]]}: {names[first.predictions[i]]}/{names[second.predictions[i]]}" for i in chosen
    ]
    return plots.image_grid_figure(images[chosen], captions, title=title)


def read_run(run_dir: Path) -> tuple[HeldOutPredictions, RunRecord]:
    record = RunRecord.read(run_dir)
    if record is None:
        raise ConfigError(
            f"'{run_dir}' holds no metrics.json: pass the folder of a finished train.py or evaluate.py run"
        )
    return HeldOutPredictions.load(run_dir), record


def compare_runs(first_dir: Path, second_dir: Path, output_dir: Path) -> list[str]:
    """Compare two runs on the same test images; writes compare.md and pictures into `output_dir` and
    returns the lines to print."""
    (first, first_record), (second, second_record) = read_run(first_dir), read_run(second_dir)
    if first.classes != second.classes or not np.array_equal(first.labels, second.labels):
        raise ConfigError(
            f"'{first_dir}' and '{second_dir}' were tested on different test images (or splits); compare runs "
            "of the same split and data"
        )
    found = mcnemar_exact(first.correct, second.correct)
    gained, lost = second.correct & ~first.correct, first.correct & ~second.correct
    lines = [
        f"A: {first_dir}  test acc {first.accuracy:.4f} (macro {first.macro_accuracy:.4f})",
        f"B: {second_dir}  test acc {second.accuracy:.4f} (macro {second.macro_accuracy:.4f})",
        f"B - A: {100 * found.difference:+.2f} points [95%: {100 * found.interval.low:+.2f}, "
        f"{100 * found.interval.high:+.2f}]; B alone right on {int(gained.sum())} images, A alone on "
        f"{int(lost.sum())}; McNemar exact p = {found.p_value:.3g}: {verdict(found.difference, found.p_value)}",
    ]
    lines += [f"warning: {line}" for line in differences({"A": first_record.provenance, "B": second_record.provenance})]
    difference = (per_class_accuracy(second) - per_class_accuracy(first)).fillna(0.0)
    output_dir.mkdir(parents=True, exist_ok=True)
    plots.save_figure(plots.per_class_difference_figure(difference, "A", "B"), output_dir / "per_class_difference.png")
    images = held_out_images(first_dir)
    if images is not None:
        for name, wanted, title in (
            ("b_right_a_wrong.png", gained, "B reads these, A does not (true: A's / B's reading)"),
            ("a_right_b_wrong.png", lost, "A reads these, B does not (true: A's / B's reading)"),
        ):
            if wanted.any():
                plots.save_figure(examples_figure(images, first, second, wanted, title), output_dir / name)
    else:
        lines.append("warning: the runs' test images are not where their config says; no example pictures")
    largest = difference.abs().sort_values(ascending=False).index[:10]
    table = "\n".join(f"| {name} | {100 * difference[name]:+.1f} |" for name in largest)
    write_atomically(
        output_dir / "compare.md",
        "# Two runs compared\n\n" + "\n\n".join(lines) + f"\n\n| class | B - A (points) |\n| --- | --- |\n{table}\n",
    )
    lines.append(f"wrote {output_dir / 'compare.md'} and pictures beside it")
    return lines
