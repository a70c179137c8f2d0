"""Configurations of a sweep, each repeated over seeds, summarised and compared with a baseline.

A configuration is every varied key but the seed. Each is summarised by n, mean, sd and the t-interval of
its accuracies; each is compared with the baseline on test accuracy by a paired t-test over the seeds both
ran (or, for two single runs, by McNemar's exact test on their test predictions), and the p-values of all
comparisons are corrected together by Holm's method.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from emnist_lightning.analysis.predictions import PREDICTIONS_FILE, HeldOutPredictions
from emnist_lightning.analysis.statistics import Comparison, holm, mcnemar_exact, paired_t, summarize, verdict
from emnist_lightning.errors import DataError

SUMMARIZED = ("val_acc", "val_macro_acc", "test_acc", "test_macro_acc")
COMPARED = "test_acc"
COMPARISON_COLUMNS = ["configuration", "difference", "low", "high", "test", "pairs", "p_value", "p_holm", "verdict"]


def summaries(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (in the sweep's order): n and, per accuracy, mean, sd and interval."""
    rows = []
    for label, group in frame.groupby("configuration", sort=False):
        row: dict[str, object] = {"configuration": label, "n": len(group)}
        for metric in SUMMARIZED:
            values = group[metric].dropna().to_numpy(dtype=float)
            if len(values) == 0:
                continue
            summary = summarize(values)
            row[f"{metric}_mean"], row[f"{metric}_sd"] = summary.mean, summary.sd
            row[f"{metric}_low"], row[f"{metric}_high"] = (
                (summary.interval.low, summary.interval.high) if summary.interval else (np.nan, np.nan)
            )
        rows.append(row)
    return pd.DataFrame(rows)


def comparison(
    baseline: pd.DataFrame, other: pd.DataFrame, predictions_of: Callable[[str], HeldOutPredictions]
) -> Comparison | str:
    """`other` against `baseline` on test accuracy, or why they cannot be compared."""
    if "split" in baseline.columns and set(baseline["split"].dropna()) != set(other["split"].dropna()):
        return "another split's test images"
    if "seed" in baseline.columns and baseline["seed"].notna().any():
        paired = (
            baseline.set_index("seed")[COMPARED]
            .dropna()
            .to_frame("baseline")
            .join(other.set_index("seed")[COMPARED].dropna().to_frame("other"), how="inner")
        )
        if len(paired) >= 2:
            return paired_t(paired["baseline"].to_numpy(), paired["other"].to_numpy())
    if len(baseline) == 1 and len(other) == 1:
        try:
            first, second = predictions_of(baseline["job_dir"].iloc[0]), predictions_of(other["job_dir"].iloc[0])
        except DataError:  # a run that kept no predictions
            return f"no {PREDICTIONS_FILE} to pair"
        if not np.array_equal(first.labels, second.labels):
            return "tested on different images"
        return mcnemar_exact(first.correct, second.correct)
    return "needs 2+ seeds run by both, or one run each"


def compare_with_baseline(
    frame: pd.DataFrame, baseline: str, predictions_of: Callable[[str], HeldOutPredictions] = HeldOutPredictions.load
) -> pd.DataFrame:
    """One row per other configuration: the difference in test accuracy from `baseline`, its interval, the
    test, its p-value, the Holm-adjusted p-value and the verdict. `frame` has a row per completed job with
    'configuration', 'seed' (or none), 'job_dir' and the accuracies."""
    if baseline not in set(frame["configuration"]):
        known = ", ".join(map(str, frame["configuration"].unique()))
        raise ValueError(f"baseline={baseline!r} is not one of the configurations ({known})")
    reference = frame[frame["configuration"] == baseline]
    rows, tested = [], []
    for label, group in frame.groupby("configuration", sort=False):
        if label == baseline:
            continue
        found = comparison(reference, group, predictions_of)
        if isinstance(found, str):
            rows.append({"configuration": label, "test": found})
            continue
        tested.append(len(rows))
        rows.append(
            {
                "configuration": label,
                "difference": found.difference,
                "low": found.interval.low,
                "high": found.interval.high,
                "test": found.test,
                "pairs": found.pairs,
                "p_value": found.p_value,
            }
        )
    adjusted = holm([rows[i]["p_value"] for i in tested]) if tested else []
    for index, p_value in zip(tested, adjusted, strict=True):
        rows[index] |= {"p_holm": p_value, "verdict": verdict(rows[index]["difference"], p_value)}
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
