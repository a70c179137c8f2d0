"""Time to accuracy: a recipe (experiment=cnn_speedrun) beside the default CNN, side by side, 3 seeds each.

    python benchmarks/speedrun.py --data-dir ../shared/emnist                  # in the precision `auto` picks
    python benchmarks/speedrun.py --data-dir ../shared/emnist --precision 32-true
    python benchmarks/speedrun.py --data-dir ... --recipe experiment=cnn_fast trainer.max_epochs=3

Each seed trains the recipe and the reference (`model=cnn`: the default CNN, its 15 epochs) as whole
`train.py` processes, one after the other, their order alternating from seed to seed so that machine noise
hits both alike. Printed: each run's fit seconds and test accuracy (plain and macro), then for each side
the mean over seeds with its 95% t-interval, whether the mean test accuracy reaches the target (90% by
default), and the fit-time ratio recipe / reference (the median of the per-seed ratios): the time to the
target is the recipe's mean fit time when its mean reaches the target. Nothing else may run meanwhile: on
2 cores a second torch process slows both many times over.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from emnist_lightning.analysis.statistics import summarize

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["experiment=cnn_speedrun"]
REFERENCE = ["model=cnn"]
FIGURES = ("fit_seconds", "test_acc", "test_macro_acc")


def train(overrides: list[str], seed: int, precision: str, data_dir: Path, run_dir: Path) -> dict:
    """One whole train.py run; its metrics.json."""
    command = [
        sys.executable,
        "train.py",
        *overrides,
        f"seed={seed}",
        f"trainer.precision={precision}",
        f"data.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "callbacks=no_pictures",
        "callbacks.progress_bar=null",
    ]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    return json.loads((run_dir / "metrics.json").read_text())


def measure(sides: dict[str, list[str]], seeds: list[int], precision: str, data_dir: Path, workdir: Path) -> dict:
    """{side: [metrics.json of each seed]}, the sides' order alternating from seed to seed."""
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for number, seed in enumerate(seeds):
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for side in order:
            record = train(sides[side], seed, precision, data_dir, workdir / f"{side}_{seed}")
            runs[side].append(record)
            print(
                f"{side:9s} seed {seed}: fit {record['fit_seconds']:7.1f} s, test acc {100 * record['test_acc']:.2f}%"
                f" (macro {100 * record['test_macro_acc']:.2f}%), {record['provenance']['precision']}",
                file=sys.stderr,
            )
    return runs


def summary(runs: dict[str, list[dict]], target: float) -> dict:
    """Each side's figures over seeds (mean, sd, interval), whether it reaches the target, and the ratio."""
    report: dict = {}
    for side, records in runs.items():
        figures = {}
        for key in FIGURES:
            found = summarize(np.array([record[key] for record in records]))
            interval = [found.interval.low, found.interval.high] if found.interval else None
            figures[key] = {"mean": found.mean, "sd": found.sd, "interval": interval}
        figures["reaches_target"] = figures["test_acc"]["mean"] >= target
        figures["precision"] = sorted({record["provenance"]["precision"] for record in records})
        report[side] = figures
    recipe, reference = runs.values()
    ratios = [one["fit_seconds"] / other["fit_seconds"] for one, other in zip(recipe, reference, strict=True)]
    report["fit_ratio"] = statistics.median(ratios)
    return report


def show(report: dict, sides: dict[str, list[str]], seeds: list[int], target: float) -> None:
    print(f"\n{len(seeds)} seeds each (stand-in data), mean ± sd [95% t-interval]")
    for side, overrides in sides.items():
        figures = report[side]
        print(f"  {side} ({' '.join(overrides)}; {', '.join(figures['precision'])})")
        for key in FIGURES:
            found, scale = figures[key], 1 if key == "fit_seconds" else 100
            low, high = (scale * bound for bound in found["interval"]) if found["interval"] else (float("nan"),) * 2
            print(f"    {key:15s} {scale * found['mean']:8.2f} ± {scale * found['sd']:.2f} [{low:.2f}, {high:.2f}]")
        reached = "reaches" if figures["reaches_target"] else "does not reach"
        print(f"    mean test accuracy {reached} {100 * target:.1f}%")
    recipe = report[next(iter(sides))]
    if recipe["reaches_target"]:
        print(f"time to {100 * target:.1f}% test accuracy: {recipe['fit_seconds']['mean']:.1f} s of fit")
    print(f"fit time recipe / reference: {report['fit_ratio']:.3f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--precision", default="auto", help="trainer.precision of both sides: auto, 32-true, ...")
    parser.add_argument("--target", type=float, default=0.90, help="the test accuracy to reach (mean over seeds)")
    parser.add_argument("--recipe", nargs="+", default=RECIPE, help="train.py overrides of the recipe")
    parser.add_argument("--reference", nargs="+", default=REFERENCE, help="train.py overrides of the reference")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures as JSON")
    args = parser.parse_args(argv)
    sides = {"recipe": args.recipe, "reference": args.reference}
    with tempfile.TemporaryDirectory() as workdir:
        runs = measure(sides, args.seeds, args.precision, args.data_dir.resolve(), Path(workdir))
    report = summary(runs, args.target) | {"sides": sides, "seeds": args.seeds}
    show(report, sides, args.seeds, args.target)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
