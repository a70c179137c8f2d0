"""The statistics of a study: how sure one run's accuracy is, and whether two runs or two configurations
really differ (Bouthillier et al. 2021; Dietterich 1998). The distributions are scipy's.

- one run: a Wilson interval for accuracy, a bootstrap over test images for macro accuracy;
- repeats of a configuration: mean, sd and a t-interval over seeds;
- two single runs on the same test images: McNemar's exact test on the images only one gets right;
- two configurations with repeats: a paired t-test over the seeds both have;
- many comparisons with one baseline: Holm's step-down correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [round(self.low, 6), round(self.high, 6)]


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """The Wilson score interval of a proportion (accuracy: images right of images tested)."""
    found = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(found.low), float(found.high))


def macro_accuracy(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """The mean over classes of each class's accuracy (classes absent from `labels` left out)."""
    tested = np.bincount(labels, minlength=num_classes)
    right = np.bincount(labels[labels == predictions], minlength=num_classes)
    present = tested > 0
    return float((right[present] / tested[present]).mean())


def macro_accuracy_interval(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, seed: int, resamples: int = 1000
) -> Interval:
    """A percentile bootstrap interval of macro accuracy, resampling test images (labels and predictions
    together). Percentile, not BCa: BCa's jackknife would recompute the statistic once per test image."""

    def statistic(sample_labels: np.ndarray, sample_predictions: np.ndarray) -> float:
        return macro_accuracy(sample_labels, sample_predictions, num_classes)

    found = stats.bootstrap(
        (labels, predictions),
        statistic,
        paired=True,
        vectorized=False,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(float(found.confidence_interval.low), float(found.confidence_interval.high))


@dataclass(frozen=True)
class Summary:
    """n values (one per seed) of one configuration: mean, sd and the t-interval of the mean."""

    n: int
    mean: float
    sd: float
    interval: Interval | None  # None for a single value


def summarize(values: np.ndarray) -> Summary:
    values = np.asarray(values, dtype=float)
    n, mean = len(values), float(values.mean())
    if n < 2:
        return Summary(n, mean, float("nan"), None)
    sd = float(values.std(ddof=1))
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sd / np.sqrt(n)) if sd else (mean, mean)
    return Summary(n, mean, sd, Interval(float(low), float(high)))


@dataclass(frozen=True)
class Comparison:
    """`other` minus `baseline`: the difference in accuracy, its interval, and the test's p-value."""

    test: str
    difference: float
    interval: Interval
    p_value: float
    pairs: int  # images (McNemar) or seeds (paired t) compared


def mcnemar_exact(baseline_right: np.ndarray, other_right: np.ndarray) -> Comparison:
    """McNemar's exact test of two runs on the same images: under no difference, of the images exactly one
    run gets right, each is as likely to be either's (a binomial test at 1/2). The difference's interval is
    the Clopper-Pearson interval of that share, scaled to all images, so it agrees with the test."""
    baseline_right, other_right = np.asarray(baseline_right, bool), np.asarray(other_right, bool)
    if baseline_right.shape != other_right.shape:
        raise ValueError(f"the runs were tested on different images ({len(baseline_right)} vs {len(other_right)})")
    images = len(baseline_right)
    only_other = int((other_right & ~baseline_right).sum())
    discordant = only_other + int((baseline_right & ~other_right).sum())
    difference = (2 * only_other - discordant) / images
    if not discordant:
        return Comparison("McNemar exact", 0.0, Interval(0.0, 0.0), 1.0, images)
    test = stats.binomtest(only_other, discordant)
    share = test.proportion_ci(confidence_level=CONFIDENCE, method="exact")
    interval = Interval(discordant * (2 * share.low - 1) / images, discordant * (2 * share.high - 1) / images)
    return Comparison("McNemar exact", difference, interval, float(test.pvalue), images)


def paired_t(baseline: np.ndarray, other: np.ndarray) -> Comparison:
    """A paired t-test of two configurations' accuracies over the same seeds, and the t-interval of the
    mean difference."""
    baseline, other = np.asarray(baseline, float), np.asarray(other, float)
    differences = other - baseline
    summary = summarize(differences)
    if summary.interval is None:
        raise ValueError("a paired test over seeds needs at least 2 seeds that both configurations ran")
    # ttest_rel gives nan when every seed moved by the same amount: certain, unless that amount is 0
    constant = summary.sd == 0
    p_value = float(summary.mean == 0) if constant else float(stats.ttest_rel(other, baseline).pvalue)
    return Comparison("paired t over seeds", summary.mean, summary.interval, p_value, len(differences))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the k-th smallest is multiplied by (m - k + 1), kept monotone and
    at most 1. Rejecting where the adjusted value is below alpha controls the family-wise error."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def verdict(difference: float, adjusted_p: float) -> str:
    """'helps', 'hurts' or 'not distinguishable' (from noise, at SIGNIFICANCE after the correction)."""
    if adjusted_p >= SIGNIFICANCE:
        return "not distinguishable"
    return "helps" if difference > 0 else "hurts"
