"""The compact table docs/results.md shows for a study: from the configurations.csv (or budgets.csv) that
`emnist-report <sweep dir>` wrote, one row per configuration with n, test accuracy and macro accuracy
(mean ± sd), the difference from the baseline with its 95% interval, Holm's p and the verdict.

    .venv/bin/python scripts/study_table.py outputs/study/mlp [--what "technique"]
    .venv/bin/python scripts/study_table.py outputs/study/ladder_mlp --ladder ladder   # step against step
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

from emnist_lightning.analysis.statistics import holm, paired_t, verdict


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


def budgets_table(sweep_dir: Path) -> str:
    frame = pd.read_csv(sweep_dir / "budgets.csv")
    budget_key = frame.columns[0]
    rows = [f"| technique | {budget_key} | Δ test acc [95%] | p (Holm) | verdict |", "| --- | --- | --- | --- | --- |"]
    for _, row in frame.sort_values(["configuration", budget_key], kind="stable").iterrows():
        difference = f"{100 * row['difference']:+.2f} [{100 * row['low']:+.2f}, {100 * row['high']:+.2f}]"
        cells = [
            f"`{row['configuration']}`",
            str(row[budget_key]),
            difference,
            f"{row['p_holm']:.3g}",
            shown_verdict(row["verdict"]),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--what", default="configuration", help="the first column's title")
    parser.add_argument("--ladder", metavar="KEY", help="each value of KEY (a ladder's steps) against the one before")
    args = parser.parse_args()
    if args.ladder:
        print(ladder_table(args.sweep_dir, args.ladder))
    elif (args.sweep_dir / "budgets.csv").is_file():
        print(budgets_table(args.sweep_dir))
    else:
        print(configurations_table(args.sweep_dir, args.what))


if __name__ == "__main__":
    main()
