"""The compact table docs/results.md shows for a study: from the configurations.csv (or budgets.csv) that
`emnist-report <sweep dir>` wrote, one row per configuration with n, test accuracy and macro accuracy
(mean ± sd), the difference from the baseline with its 95% interval, Holm's p and the verdict.

    .venv/bin/python scripts/study_table.py outputs/study/mlp [--what "technique"]
    .venv/bin/python scripts/study_table.py outputs/study/ladder_mlp --ladder ladder   # step against step
    .venv/bin/python scripts/study_table.py outputs/study/speedrun --steps c1:c0 c2:c1   # sweeps in folders
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

from emnist_lightning.analysis.report import collect
from emnist_lightning.analysis.statistics import holm, paired_t, summarize, verdict


def mean_sd(text: str) -> str:
    """'85.41 ± 0.16 [85.2, 85.6]' -> '85.41 ± 0.16'."""
    return str(text).split(" [")[0] if isinstance(text, str) else ""


def shown_verdict(verdict: str) -> str:
    """A distinguishable verdict in bold; 'n.d.' for not distinguishable, to keep the table narrow."""
    return (
        f"**{verdict}**" if verdict in ("helps", "hurts") else "n.d." if verdict == "not distinguishable" else verdict
    )


def configurations_table(sweep_dir: Path, what: str) -> str:
    frame = pd.read_csv(sweep_dir / "configurations.csv", keep_default_na=False)
    rows = [
        f"| {what} | n | test acc | test macro acc | Δ test acc [95%] | p (Holm) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, row in frame.iterrows():
        cells = [
            f"`{row['configuration']}`",
            str(row["n"]),
            mean_sd(row["test acc"]),
            mean_sd(row["test macro acc"]),
            row["Δ test acc [95%]"],
            row["p (Holm)"],
            shown_verdict(row["verdict"]),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ladder_table(sweep_dir: Path, key: str) -> str:
    """Each step of a ladder against the step before it, paired over seeds (results.csv): which steps carry
    the gain. Holm-corrected over the steps; fit time is the median over seeds."""
    frame = pd.read_csv(sweep_dir / "results.csv")
    frame = frame[frame["status"] == "completed"]
    steps = sorted(frame[key].unique())
    accuracy = frame.pivot(index="seed", columns=key, values="test_acc")
    compared = [
        paired_t(accuracy[before].to_numpy(), accuracy[step].to_numpy()) for before, step in itertools.pairwise(steps)
    ]
    adjusted = holm([comparison.p_value for comparison in compared])
    rows = [
        "| step | fit s | gain over the step before [95%] | p (Holm) | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for index, step in enumerate(steps):
        fit = frame.loc[frame[key] == step, "fit_seconds"].median()
        if index == 0:
            rows.append(f"| `{step}` | {fit:.0f} | | | |")
            continue
        found, p_value = compared[index - 1], adjusted[index - 1]
        gain = f"{100 * found.difference:+.2f} [{100 * found.interval.low:+.2f}, {100 * found.interval.high:+.2f}]"
        shown = shown_verdict(verdict(found.difference, p_value))
        rows.append(f"| `{step}` | {fit:.0f} | {gain} | {p_value:.3g} | {shown} |")
    return "\n".join(rows)


def by_seed(step_dir: Path) -> pd.DataFrame:
    """A step's finished jobs (one sweep in its own folder), indexed by seed."""
    frame, _, _ = collect(step_dir)
    return frame[frame["status"] == "completed"].set_index("seed").sort_index()


def steps_table(root: Path, steps: list[str]) -> str:
    """Steps run as sweeps in folders of `root` (scripts/speedrun_steps.sh), each `step:base` against the step
    it changes, paired over seeds on validation accuracy (what chooses), Holm-corrected over the steps; the
    test figures beside (mean ± sd over seeds, the fit time the median job's)."""
    pairs = [step.split(":") for step in steps]
    runs = {name: by_seed(root / name) for pair in pairs for name in pair}
    compared = [paired_t(runs[base]["val_acc"].to_numpy(), runs[step]["val_acc"].to_numpy()) for step, base in pairs]
    adjusted = holm([comparison.p_value for comparison in compared])
    rows = [
        "| step | fit s | val acc | Δ val acc over its base [95%] | p (Holm) | test acc | test macro acc |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def figures(name: str) -> list[str]:
        run = runs[name]
        tested = [summarize(100 * run[key].to_numpy()) for key in ("test_acc", "test_macro_acc")]
        shown = [f"{run['fit_seconds'].median():.0f}", f"{100 * run['val_acc'].mean():.2f}"]
        return shown + [f"{found.mean:.2f} ± {found.sd:.2f}" for found in tested]

    first = pairs[0][1]
    fit, val, test, macro = figures(first)
    rows.append(f"| `{first}` | {fit} | {val} | | | {test} | {macro} |")
    for (step, base), found, p_value in zip(pairs, compared, adjusted, strict=True):
        fit, val, test, macro = figures(step)
        gain = f"{100 * found.difference:+.2f} [{100 * found.interval.low:+.2f}, {100 * found.interval.high:+.2f}]"
        rows.append(f"| `{step}` (on `{base}`) | {fit} | {val} | {gain} | {p_value:.3g} | {test} | {macro} |")
    return "\n".join(rows)


def budgets_table(sweep_dir: Path) -> str:
    """Each technique's difference from the baseline at each budget, one row a technique; distinguishable
    after Holm's correction in bold (the p-values are in budgets.csv)."""
    frame = pd.read_csv(sweep_dir / "budgets.csv")
    budget_key = frame.columns[0]
    budgets = sorted(frame[budget_key].unique())
    rows = [
        f"| Δ test acc [95%] at {budget_key} = | {' | '.join(str(budget) for budget in budgets)} |",
        "| --- |" + " --- |" * len(budgets),
    ]
    for technique, found in frame.groupby("configuration"):
        cells = []
        for budget in budgets:
            row = found[found[budget_key] == budget].iloc[0]
            cell = f"{100 * row['difference']:+.2f} [{100 * row['low']:+.2f}, {100 * row['high']:+.2f}]"
            cells.append(f"**{cell}**" if row["verdict"] in ("helps", "hurts") else cell)
        rows.append(f"| `{technique}` | {' | '.join(cells)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--what", default="configuration", help="the first column's title")
    parser.add_argument("--ladder", metavar="KEY", help="each value of KEY (a ladder's steps) against the one before")
    parser.add_argument("--steps", nargs="+", metavar="STEP:BASE", help="sweeps in folders, each against its base")
    args = parser.parse_args()
    if not args.steps and not (args.sweep_dir / "results.csv").is_file():
        parser.exit(2, f"study_table.py: {args.sweep_dir} holds no report; run emnist-report {args.sweep_dir} first\n")
    if args.steps:
        print(steps_table(args.sweep_dir, args.steps))
    elif args.ladder:
        print(ladder_table(args.sweep_dir, args.ladder))
    elif (args.sweep_dir / "budgets.csv").is_file():
        print(budgets_table(args.sweep_dir))
    else:
        print(configurations_table(args.sweep_dir, args.what))


if __name__ == "__main__":
    main()
