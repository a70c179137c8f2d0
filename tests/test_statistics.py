"""The study's statistics against known answers, and comparisons of synthetic runs built to differ or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emnist_lightning.analysis import statistics
from emnist_lightning.analysis.against_baseline import compare_with_baseline, summaries
from emnist_lightning.analysis.predictions import HeldOutPredictions
from emnist_lightning.cli.train import repeats_as_seeds
from emnist_lightning.errors import ConfigError


def test_mcnemar_exact_on_a_textbook_table() -> None:
    """Of the images only one run reads right, 1 are the second's and 9 the first's: the exact two-sided
    p-value is 2 * P(X <= 1) for X ~ Binomial(10, 1/2) = 2 * (1 + 10) / 1024."""
    first = np.array([True] * 9 + [False] * 1 + [True] * 50 + [False] * 40)
    second = np.array([False] * 9 + [True] * 1 + [True] * 50 + [False] * 40)
    found = statistics.mcnemar_exact(first, second)
    assert found.p_value == pytest.approx(22 / 1024)
    assert found.difference == pytest.approx(-8 / 100)


def test_wilson_interval_of_8_in_10() -> None:
    """Wilson's 95% interval of 8/10 is [0.4902, 0.9433] (Newcombe 1998, table I)."""
    interval = statistics.wilson_interval(8, 10)
    assert (interval.low, interval.high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))


def test_holm_correction() -> None:
    """Sorted 0.005, 0.01, 0.03, 0.04 are multiplied by 4, 3, 2, 1 and kept monotone."""
    assert statistics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_t_interval_of_a_small_sample() -> None:
    """1..5: mean 3, sd sqrt(2.5), and t(0.975, 4) = 2.7764 times sd / sqrt(5) on either side."""
    summary = statistics.summarize(np.array([1.0, 2, 3, 4, 5]))
    half = 2.776445 * np.sqrt(2.5) / np.sqrt(5)
    assert (summary.n, summary.mean, summary.sd) == (5, 3.0, pytest.approx(np.sqrt(2.5)))
    assert (summary.interval.low, summary.interval.high) == (pytest.approx(3 - half), pytest.approx(3 + half))


def test_macro_accuracy_interval_holds_the_value() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    predictions = np.where(rng.random(2000) < 0.8, labels, rng.integers(0, 10, 2000))
    value = statistics.macro_accuracy(labels, predictions, 10)
    interval = statistics.macro_accuracy_interval(labels, predictions, 10, seed=0)
    assert interval.low < value < interval.high and interval.high - interval.low < 0.06


def runs_apart(better_on: float, swapped: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two runs' predictions on 10,000 images: the second is right on `better_on` of the images
    the first gets wrong; and on about `swapped` / 2 of the images each way (counts drawn at random, with
    the same expectation) it trades right for wrong and wrong for right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 47, 10_000)
    first = np.where(rng.random(10_000) < 0.85, labels, (labels + 1) % 47)
    second = first.copy()
    right, wrong = np.flatnonzero(first == labels), np.flatnonzero(first != labels)
    fixed = rng.choice(wrong, int(better_on * len(labels)) + rng.poisson(swapped * len(labels) / 2), replace=False)
    broken = rng.choice(right, rng.poisson(swapped * len(labels) / 2), replace=False)
    second[fixed], second[broken] = labels[fixed], (labels[broken] + 1) % 47
    return labels, first, second


def test_a_run_better_on_5_percent_of_images_is_distinguishable() -> None:
    labels, first, second = runs_apart(better_on=0.05, swapped=0.0)
    found = statistics.mcnemar_exact(first == labels, second == labels)
    assert found.p_value < 1e-6 and found.interval.low > 0.04
    assert statistics.verdict(found.difference, found.p_value) == "helps"


def test_runs_differing_at_random_both_ways_are_not() -> None:
    """Over 200 pairs of runs that trade about 5% of images at random both ways, the test calls at most
    about 5% distinguishable (McNemar's exact test is conservative), though every pair differs on ~500 images."""
    called = 0
    for seed in range(200):
        labels, first, second = runs_apart(better_on=0.0, swapped=0.05, seed=seed)
        found = statistics.mcnemar_exact(first == labels, second == labels)
        assert (first != second).mean() > 0.04
        called += statistics.verdict(found.difference, found.p_value) != "not distinguishable"
    assert called <= 16  # 5% of 200 is 10; P(Binomial(200, 0.05) > 16) < 0.03


def test_configurations_over_seeds_are_paired_and_corrected(tmp_path: Path) -> None:
    """Three seeds each: a configuration better by 2 points at every seed is distinguishable after Holm's
    correction; one that moves by a few hundredths either way is not."""
    base = [0.850, 0.853, 0.848]
    rows = []
    for name, shift in (("base", [0, 0, 0]), ("better", [0.021, 0.019, 0.020]), ("same", [0.0004, -0.0006, 0.0002])):
        for seed, (accuracy, moved) in enumerate(zip(base, shift, strict=True), start=1):
            value = accuracy + moved
            rows.append(
                {
                    "configuration": name,
                    "seed": seed,
                    "job_dir": tmp_path,
                    "val_acc": value,
                    "val_macro_acc": value,
                    "test_acc": value,
                    "test_macro_acc": value,
                }
            )
    frame = pd.DataFrame(rows)
    compared = compare_with_baseline(frame, "base").set_index("configuration")
    assert compared.loc["better", "verdict"] == "helps" and compared.loc["better", "test"] == "paired t over seeds"
    assert compared.loc["same", "verdict"] == "not distinguishable"
    assert compared.loc["better", "p_holm"] >= compared.loc["better", "p_value"]
    summary = summaries(frame).set_index("configuration")
    assert (
        summary.loc["better", "n"] == 3
        and summary.loc["better", "test_acc_low"] < summary.loc["better", "test_acc_mean"]
    )


def test_two_single_runs_are_compared_by_their_predictions(tmp_path: Path) -> None:
    labels, first, second = runs_apart(better_on=0.05, swapped=0.0)
    classes = tuple(str(i) for i in range(47))
    for name, predicted in (("a", first), ("b", second)):
        HeldOutPredictions(labels, predicted, classes).save(tmp_path / name)
    frame = pd.DataFrame(
        [{"configuration": name, "seed": None, "job_dir": tmp_path / name, "test_acc": 0.0} for name in "ab"]
    )
    (row,) = compare_with_baseline(frame, "a").to_dict("records")
    assert row["test"] == "McNemar exact" and row["verdict"] == "helps" and row["pairs"] == 10_000


def test_repeats_is_a_range_of_seeds() -> None:
    assert repeats_as_seeds(["-m", "optimizer=sgd,adam", "repeats=3"]) == [
        "-m",
        "optimizer=sgd,adam",
        "seed=range(1,4)",
    ]
    for wrong in (["repeats=3"], ["-m", "repeats=0"], ["-m", "repeats=2", "seed=1,2"]):
        with pytest.raises(ConfigError, match="repeats"):
            repeats_as_seeds(wrong)
