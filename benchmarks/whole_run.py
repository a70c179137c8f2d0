"""Whole runs as a user starts them, beside an independent bare-PyTorch script doing the same work.

    python benchmarks/whole_run.py --data-dir ../shared/emnist [--repeats 3] [--no-sweep]

single  `python train.py model=mlp optimizer=adam trainer.max_epochs=5` as a whole process, against
        `benchmarks/bare_run.py --epochs 5` (same files, network, optimizer, schedule, validation and test),
        and against the bare script with PyTorch's fused Adam (`--fused`), the implementation that
        train.py's optimizer configs choose
sweep   `python train.py -m optimizer=sgd,adam regularization=none,l2 trainer.max_epochs=3`, against the
        sum of the four matching bare runs

The order of the runs rotates from repeat to repeat so that machine noise hits them alike; a ratio is the
median of the ratios within each repeat. Nothing else may run meanwhile: on 2 cores a second torch process
slows both many times over. The breakdown is where the last single run's time went, from its
metrics.json (`laps` and `pictures`: training/callbacks.py's Stopwatch, training/figure_callbacks.py) and the
process's own start and end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SINGLE = ["model=mlp", "optimizer=adam", "trainer.max_epochs=5"]
SWEEP = ["optimizer=sgd,adam", "regularization=none,l2", "trainer.max_epochs=3"]
BARE_SWEEP = [["--optimizer", o, "--l2", l2] for o in ("sgd", "adam") for l2 in ("0", "5e-5")]


@dataclass(frozen=True)
class Timed:
    """Processes run one after another: their wall time, and when the first started and the last ended."""

    seconds: float
    launched: float
    ended: float


def timed(commands: list[list[str]]) -> Timed:
    launched, started = time.time(), time.perf_counter()
    for command in commands:
        subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    return Timed(time.perf_counter() - started, launched, time.time())


def bare(data_dir: Path, epochs: int, *options: str) -> list[str]:
    return [sys.executable, "benchmarks/bare_run.py", f"--data-dir={data_dir}", f"--epochs={epochs}", *options]


def ours(data_dir: Path, log_dir: Path, *overrides: str) -> list[str]:
    flags = [o for o in overrides if o.startswith("-")]  # Hydra reads -m before the overrides
    rest = [o for o in overrides if not o.startswith("-")]
    return [sys.executable, "train.py", *flags, f"data.data_dir={data_dir}", f"paths.log_dir={log_dir}", *rest]


def commands(kind: str, data_dir: Path, workdir: Path, run_dir: Path) -> dict[str, list[list[str]]]:
    """What ours and the bare script run for a single run or the sweep."""
    if kind == "single":
        return {
            "ours": [ours(data_dir, workdir, f"hydra.run.dir={run_dir}", *SINGLE)],
            "bare": [bare(data_dir, 5)],
            "bare fused": [bare(data_dir, 5, "--fused")],
        }
    return {
        "ours": [ours(data_dir, workdir, "-m", f"hydra.sweep.dir={run_dir}", *SWEEP)],
        "bare": [bare(data_dir, 3, *options) for options in BARE_SWEEP],
    }


def measure(
    data_dir: Path, repeats: int, sweep: bool, workdir: Path
) -> tuple[dict[str, list[dict[str, float]]], Timed]:
    """Each kind's seconds per repeat and variant, and the last single run of ours."""
    seconds: dict[str, list[dict[str, float]]] = {kind: [] for kind in (["single", "sweep"] if sweep else ["single"])}
    for repeat in range(repeats):
        for kind in seconds:
            runs = commands(kind, data_dir, workdir, workdir / f"{kind}_{repeat}")
            names = list(runs)
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            results = {name: timed(runs[name]) for name in order}
            seconds[kind].append({name: result.seconds for name, result in results.items()})
            if kind == "single":
                last_single = results["ours"]
            shown = ", ".join(f"{name} {value:.1f} s" for name, value in seconds[kind][-1].items())
            print(f"{kind} repeat {repeat}: {shown}", file=sys.stderr)
    return seconds, last_single


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-sweep", action="store_true", help="measure the single run only")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures as JSON")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        seconds, process = measure(data_dir, args.repeats, not args.no_sweep, workdir)
        record = json.loads((workdir / f"single_{args.repeats - 1}" / "metrics.json").read_text())
    report = {"runs": {}, "last_single_run": {"laps": record["laps"], "pictures": record["pictures"]}}
    print(f"\nwhole runs, median of {args.repeats} repeats")
    for kind, repeats in seconds.items():
        row = {f"{name} s": statistics.median(repeat[name] for repeat in repeats) for name in repeats[0]}
        for name in (name for name in repeats[0] if name != "ours"):
            row[f"ours / {name}"] = statistics.median(repeat["ours"] / repeat[name] for repeat in repeats)
        report["runs"][kind] = row
        print(
            f"  {kind:7s} "
            + "   ".join(f"{name} {value:.2f}{'x' if '/' in name else ''}" for name, value in row.items())
        )
    print(f"\nwhere the last single run's {process.ended - process.launched:.1f} s went")
    train_entered = record["started_at"] - record["laps"].get("build", 0.0)
    rows = {"start-up: imports, Hydra, run folder": train_entered - process.launched, **record["laps"]}
    rows["after metrics.json: exit"] = process.ended - record["finished_at"]
    for name, seconds in rows.items():
        print(f"  {name:50s} {seconds:6.2f} s")
    print("  of which pictures:")
    for name, seconds in sorted(record["pictures"].items(), key=lambda item: -item[1]):
        print(f"    {name:48s} {seconds:6.2f} s")
    report["last_single_run"]["start-up"] = rows["start-up: imports, Hydra, run folder"]
    report["last_single_run"]["exit"] = rows["after metrics.json: exit"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
