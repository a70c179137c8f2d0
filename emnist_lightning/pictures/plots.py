"""Figures for people: every function takes arrays and returns a matplotlib Figure.

Figures are made as objects of their own, drawn by the Agg canvas, never through pyplot: importing the
package leaves the backend and the figure list of a notebook or program that uses matplotlib as they were."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from emnist_lightning.atomic import replaced_atomically

DPI = 110


def subplots(*grid: int, figsize: tuple[float, float], layout: str | None = None, **grid_settings: Any) -> Any:
    """`(figure, axes)` as pyplot.subplots makes them, on a figure pyplot does not know."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*grid, **grid_settings)


def save_figure(fig: Figure, path: Path) -> np.ndarray:
    """Render `fig` with Agg (whatever backend made it), write it as a PNG file; returns its (H, W, 3) pixels,
    e.g. for TensorBoard."""
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as file:
        Image.fromarray(pixels).save(file, format="png", compress_level=3)  # a third of zlib level 6's time
    return pixels


def mosaic(tiles: np.ndarray, columns: int, gap: int, top: int = 0) -> np.ndarray:
    """(N, H, W) tiles laid out `columns` to a row on a NaN background (drawn blank), `gap` pixels apart,
    with `top` blank pixels above each tile for its caption. One image drawn once is far cheaper than
    one axes per tile."""
    count, height, width = tiles.shape
    rows = max(1, -(-count // columns))
    cell_height, cell_width = top + height + gap, width + gap
    canvas = np.full((rows * cell_height, columns * cell_width - gap), np.nan)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        y, x = row * cell_height + top, column * cell_width
        canvas[y : y + height, x : x + width] = tile
    return canvas


def tile_corner(index: int, columns: int, tile_shape: tuple[int, int], gap: int, top: int = 0) -> tuple[float, float]:
    """The (x, y) of the top-left pixel edge of tile `index` in `mosaic`'s image, in imshow's data units."""
    row, column = divmod(index, columns)
    return column * (tile_shape[1] + gap) - 0.5, row * (top + tile_shape[0] + gap) + top - 0.5


def unit_scaled(images: np.ndarray) -> np.ndarray:
    """Each image stretched to [0, 1] on its own, as imshow would scale it alone in its axes."""
    if not len(images):  # e.g. the mistakes of a model that made none
        return images.astype(float)
    flat = images.reshape(len(images), -1).astype(float)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    return ((flat - low) / np.where(high > low, high - low, 1.0)).reshape(images.shape)


def blank_for_nan(name: str) -> Colormap:
    """The colormap `name`, drawing NaN (the mosaic's background) as the figure's white."""
    return matplotlib.colormaps[name].with_extremes(bad="white")


def confusion_matrix_figure(
    matrix: np.ndarray,
    classes: Sequence[str],
    normalize: bool = False,
    hide_diagonal: bool = False,
    title: str = "Confusion matrix",
) -> Figure:
    """Heatmap of true (rows) vs predicted (columns) characters."""
    values = matrix.astype(float)
    if normalize:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    if hide_diagonal:
        np.fill_diagonal(values, np.nan)  # the correct predictions would drown out the confusions
    # Seaborn draws the whole figure once to check its tick labels: the layout engine and the colorbar,
    # which would make that draw cost as much as the real one, come after it.
    side = max(8.0, 0.22 * len(classes) + 2.5)  # readable labels from 10 classes (Digits) to 62 (ByClass)
    fig, ax = subplots(figsize=(side * 1.15, side))
    sns.heatmap(
        values, ax=ax, cmap="rocket_r", square=True, xticklabels=list(classes), yticklabels=list(classes), cbar=False
    )
    fig.set_layout_engine("constrained")
    fig.colorbar(ax.collections[0], ax=ax, shrink=0.8, label="fraction of true class" if normalize else "images")
    ax.set_xlabel("predicted", fontsize=13)
    ax.set_ylabel("true", fontsize=13)
    ax.tick_params(axis="both", labelsize=9, rotation=0)
    if max(map(len, classes)) > 1:  # Letters' 'A/a' side by side would overlap
        ax.tick_params(axis="x", rotation=90)
    ax.set_title(title, fontsize=15)
    return fig


def image_grid_figure(
    images: np.ndarray,
    captions: Sequence[str],
    columns: int = 8,
    caption_colors: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Upright (N, 28, 28) images in a grid, each with a caption above it."""
    rows = max(1, -(-len(images) // columns))
    gap, top = 4, 8
    fig, ax = subplots(figsize=(1.4 * columns, 1.6 * rows + (0.4 if title else 0)))
    ax.imshow(mosaic(unit_scaled(images), columns, gap, top), cmap=blank_for_nan("gray_r"), vmin=0, vmax=1)
    for index, caption in enumerate(captions[: len(images)]):
        x, y = tile_corner(index, columns, images.shape[1:], gap, top)
        color = caption_colors[index] if caption_colors is not None else "black"
        ax.text(x + images.shape[2] / 2, y - 1.5, caption, ha="center", va="bottom", fontsize=10, color=color)
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig


def prediction_grid_figure(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]
) -> Figure:
    """Sample test images captioned 'true -> predicted', mistakes in red."""
    captions = [f"{classes[t]} → {classes[p]}" for t, p in zip(labels, predictions, strict=True)]
    colors = ["black" if t == p else "crimson" for t, p in zip(labels, predictions, strict=True)]
    return image_grid_figure(images, captions, caption_colors=colors, title="test samples: true → predicted")


def accuracy_bars_figure(results: pd.DataFrame, varied: Sequence[str]) -> Figure:
    """Test accuracy (and macro accuracy) per configuration, best first; a configuration run with several
    seeds is one bar, its mean, with the seeds' sd as the error bar."""
    order = results.groupby("configuration")["test_acc"].mean().sort_values(ascending=False).index
    long = results.melt(
        id_vars=["configuration"], value_vars=["test_acc", "test_macro_acc"], var_name="metric", value_name="accuracy"
    )
    fig, ax = subplots(figsize=(max(6, 0.9 * len(order) + 2), 5), layout="constrained")
    sns.barplot(
        long, x="configuration", y="accuracy", hue="metric", order=order, errorbar="sd", ax=ax, palette="viridis"
    )
    low = max(0.0, long["accuracy"].min() - 0.05)
    ax.set_ylim(low, min(1.0, long["accuracy"].max() + 0.02))
    ax.set_xlabel(", ".join(varied))
    ax.set_title("Test accuracy per configuration")
    ax.tick_params(axis="x", rotation=30)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    return fig


def validation_curves_figure(results: pd.DataFrame) -> Figure:
    """Validation accuracy per epoch, one line per job, one colour (and legend entry) per configuration."""
    fig, ax = subplots(figsize=(9, 5.5), layout="constrained")
    names = list(dict.fromkeys(results["configuration"]))
    colors = dict(zip(names, sns.color_palette("husl", len(names)), strict=True))
    labelled: set[str] = set()
    for _, row in results.iterrows():
        history, name = row["history"], row["configuration"]
        label = None if name in labelled else name  # the seeds of a configuration share one entry
        labelled.add(name)
        ax.plot(range(1, len(history) + 1), history, marker="o", markersize=3, color=colors[name], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def accuracy_heatmap_figure(results: pd.DataFrame, rows: str, columns: str) -> Figure:
    """Mean test accuracy for each pair of values of two swept parameters."""
    table = results.pivot_table(index=rows, columns=columns, values="test_acc", aggfunc="mean")
    fig, ax = subplots(figsize=(1.3 * len(table.columns) + 3, 0.7 * len(table) + 2), layout="constrained")
    sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", ax=ax, cbar_kws={"label": "test accuracy"})
    ax.set_title("Test accuracy")
    return fig


def class_samples_figure(samples: np.ndarray, classes: Sequence[str], title: str | None = None) -> Figure:
    """(classes, rows, 28, 28) random samples: one column per class, its character on top."""
    num_classes, rows = samples.shape[:2]
    height, width = samples.shape[2:]
    gap = 2
    by_row = samples.transpose(1, 0, 2, 3).reshape(-1, height, width)  # mosaic fills row by row
    fig, ax = subplots(figsize=(0.42 * num_classes, 0.46 * rows + 0.5))
    ax.imshow(mosaic(unit_scaled(by_row), num_classes, gap), cmap=blank_for_nan("gray_r"), vmin=0, vmax=1)
    frames = [
        Rectangle(tile_corner(index, num_classes, (height, width), gap), width, height) for index in range(len(by_row))
    ]
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="black", linewidth=0.6))
    for column, name in enumerate(classes[:num_classes]):
        x, y = tile_corner(column, num_classes, (height, width), gap)
        ax.text(x + width / 2, y - 2, name, ha="center", va="bottom", fontsize=12, fontweight="bold")
    ax.axis("off")
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.01, top=0.85 if title else 0.93)
    if title:  # above the class names
        fig.suptitle(title, y=0.99, fontsize=11)
    return fig


def class_distribution_figure(counts: pd.DataFrame) -> Figure:
    """Images per class in each split; `counts` has columns class, split, images."""
    fig, ax = subplots(figsize=(15, 5), layout="constrained")
    sns.barplot(counts, x="class", y="images", hue="split", ax=ax, palette="Set2")
    ax.set_title("Images per class and split (flat bars = balanced)")
    ax.set_xlabel("character")
    ax.legend(title="split", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def mean_images_figure(means: np.ndarray, classes: Sequence[str], columns: int = 12) -> Figure:
    """The average image of every class."""
    return image_grid_figure(means, list(classes), columns=columns, title="Mean image per class")


def per_class_metrics_figure(table: pd.DataFrame) -> Figure:
    """Per-class accuracy, precision, recall and F1, classes sorted by F1."""
    ordered = table.sort_values("f1")
    long = ordered.melt(id_vars="class", value_vars=["accuracy", "precision", "recall", "f1"], var_name="metric")
    fig, ax = subplots(figsize=(16, 5.5), layout="constrained")
    sns.barplot(
        long, x="class", y="value", hue="metric", ax=ax, palette="muted", order=list(ordered["class"]), errorbar=None
    )  # one value per bar: no error bars to estimate
    ax.set_ylim(max(0.0, long["value"].min() - 0.05), 1.0)
    ax.set_xlabel("character (worst F1 first)")
    ax.set_title("Per-class metrics (test)")
    ax.legend(ncols=4, loc="lower right")
    return fig


def confused_pairs_figure(pairs: list[tuple[str, str, int, np.ndarray]], examples: int = 8) -> Figure:
    """One row per (true, predicted, count, images) pair: the label, then example images."""
    rows = max(1, len(pairs))
    gap = 6
    tiles = np.full((rows * (examples + 1), 28, 28), np.nan)  # the first tile of a row holds the label
    for row, (*_, images) in enumerate(pairs):
        shown = images[:examples]
        if len(shown):
            tiles[row * (examples + 1) + 1 : row * (examples + 1) + 1 + len(shown)] = unit_scaled(shown)
    fig, ax = subplots(figsize=(1.2 * (examples + 1) + 1, 1.25 * rows + 0.4))
    ax.imshow(mosaic(tiles, examples + 1, gap), cmap=blank_for_nan("gray_r"), vmin=0, vmax=1)
    for row, (true, predicted, count, _) in enumerate(pairs):
        x, y = tile_corner(row * (examples + 1), examples + 1, (28, 28), gap)
        ax.text(x + 14, y + 14, f"{true} → {predicted}\n{count}×", ha="center", va="center", fontsize=13)
    ax.axis("off")
    fig.suptitle("Most-confused pairs (true → predicted, test)", fontsize=13)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Reliability:
    """Each test image's confidence (its top probability) and the calibration error of those probabilities."""

    confidence: np.ndarray
    ece: float


def reliability_figure(
    correct: np.ndarray, bins: int, shown: Reliability, before: Reliability | None = None, temperature: float = 1.0
) -> Figure:
    """Accuracy against confidence per bin (the diagonal is perfect calibration) for the probabilities people
    are shown, and, when a temperature was fitted, for the raw ones before it."""
    edges = np.linspace(0, 1, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2

    def per_bin(confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        counts = np.bincount(which, minlength=bins)
        return np.bincount(which, weights=correct, minlength=bins) / np.maximum(counts, 1), counts

    fig, (top, bottom) = subplots(
        2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True, layout="constrained"
    )
    accuracy, counts = per_bin(shown.confidence)
    label = f"after temperature scaling (T={temperature:.2f}, ECE {shown.ece:.3f})" if before else "accuracy"
    top.bar(centers[counts > 0], accuracy[counts > 0], width=1 / bins, edgecolor="black", label=label)
    bottom.bar(centers, counts, width=1 / bins, color="gray")
    if before is not None:
        raw_accuracy, raw_counts = per_bin(before.confidence)
        kept = raw_counts > 0
        top.plot(centers[kept], raw_accuracy[kept], "o-", color="tab:red", label=f"before it (ECE {before.ece:.3f})")
        bottom.stairs(raw_counts, edges, color="tab:red", linewidth=1.5)
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy")
    title = "Reliability diagram" + ("" if before else f" (ECE {shown.ece:.3f})")
    top.set_title(title)
    top.legend(loc="upper left")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("images")
    return fig


def filters_figure(weights: np.ndarray, title: str, columns: int = 8) -> Figure:
    """(N, H, W) filters or weight images, each scaled symmetrically around zero."""
    rows = max(1, -(-len(weights) // columns))
    limits = np.abs(weights.reshape(len(weights), -1)).max(axis=1)
    scaled = weights / np.where(limits > 0, limits, 1.0)[:, None, None]
    fig, ax = subplots(figsize=(1.3 * columns, 1.3 * rows + 0.5))
    gap = max(2, weights.shape[-1] // 6)
    ax.imshow(mosaic(scaled, columns, gap), cmap=blank_for_nan("RdBu_r"), vmin=-1, vmax=1)
    ax.axis("off")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def feature_maps_figure(image: np.ndarray, maps: list[np.ndarray], channels: int = 8) -> Figure:
    """The input, then the first `channels` feature maps of each conv block, one block per row."""
    fig, axes = subplots(len(maps), channels + 1, figsize=(1.3 * (channels + 1), 1.4 * len(maps) + 0.4))
    axes = np.atleast_2d(axes)
    for row, block in enumerate(maps):
        axes[row, 0].imshow(image, cmap="gray_r")
        axes[row, 0].set_title("input" if row == 0 else "", fontsize=9)
        axes[row, 0].set_ylabel(f"block {row + 1}")
        for column in range(channels + 1):
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
        for column, feature in enumerate(block[:channels], start=1):
            axes[row, column].imshow(feature, cmap="viridis")
        axes[row, 1].set_title(f"{block.shape[1]}x{block.shape[2]}, {len(block)} channels", fontsize=8, loc="left")
    fig.suptitle("Feature maps of one test image", fontsize=12)
    fig.tight_layout()
    return fig


def predictions_sheet_figure(
    pictures: Sequence[np.ndarray], views: Sequence[np.ndarray], names: Sequence[str], readings: Sequence[str]
) -> Figure:
    """Each input as given beside the 28x28 image(s) the model saw, (characters, 28, 28) white ink on black,
    with what the model read under them."""
    columns = max(1, min(3, len(pictures)))  # input/view pairs per row
    rows = max(1, int(np.ceil(len(pictures) / columns)))
    fig, axes = subplots(
        rows,
        2 * columns,
        figsize=(4 * columns, 2.3 * rows),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.2, 1] * columns},
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (picture, seen, name, reading) in enumerate(zip(pictures, views, names, readings, strict=True)):
        given, model_view = axes[i // columns, 2 * (i % columns)], axes[i // columns, 2 * (i % columns) + 1]
        given.imshow(picture, cmap="gray", vmin=0, vmax=1)
        given.set_title(name, fontsize=8)
        gap = np.full((seen.shape[1], 2), np.nan)  # characters of a word side by side, a gap between
        strip = np.concatenate([part for view in seen for part in (view, gap)][:-1], axis=1)
        model_view.imshow(strip, cmap="gray", vmin=0, vmax=1)
        model_view.set_title("model sees", fontsize=8)
        model_view.text(0.5, -0.08, reading, transform=model_view.transAxes, ha="center", va="top", fontsize=9)
    fig.tight_layout()
    return fig


VERDICT_COLORS = {"helps": "#1a9850", "hurts": "#d73027", "not distinguishable": "#7f7f7f"}


def forest_figure(comparisons: pd.DataFrame, baseline: str, metric: str = "test accuracy") -> Figure:
    """Each configuration's difference from the baseline (points, in points of accuracy) with its 95%
    interval (bars), coloured by the verdict after Holm's correction; the line at 0 is the baseline."""
    rows = comparisons.dropna(subset=["difference"]).iloc[::-1]  # the sweep's first on top
    fig, ax = subplots(figsize=(8, 0.45 * len(rows) + 1.6), layout="constrained")
    for y, (_, row) in enumerate(rows.iterrows()):
        color = VERDICT_COLORS.get(row["verdict"], "black")
        centre, low, high = 100 * row["difference"], 100 * row["low"], 100 * row["high"]
        ax.errorbar(centre, y, xerr=[[centre - low], [high - centre]], fmt="o", color=color, capsize=4, markersize=6)
        ax.text(high, y, f"  p={row['p_holm']:.2g}", va="center", fontsize=8, color=color)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [str(label) for label in rows["configuration"]])
    ax.set_xlabel(f"difference in {metric} from the baseline (points; 95% interval)")
    ax.set_title(f"Against the baseline: {baseline}")
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=v) for v, c in VERDICT_COLORS.items()]
    ax.legend(handles=handles, fontsize=8, loc="best", title="after Holm's correction", title_fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.25)
    return fig


def budget_figure(comparisons: pd.DataFrame, baseline: str, budget_key: str) -> Figure:
    """Each configuration's difference from the baseline (points of accuracy, 95% interval) against the
    budget it was trained at, one line per configuration; filled markers: distinguishable after Holm."""
    rows = comparisons.dropna(subset=["difference"])
    budgets = sorted(rows["budget"].unique())
    fig, ax = subplots(figsize=(8, 5), layout="constrained")
    names = list(dict.fromkeys(rows["configuration"]))
    for index, (name, color) in enumerate(zip(names, sns.color_palette("husl", len(names)), strict=True)):
        mine = rows[rows["configuration"] == name].sort_values("budget")
        x = [budgets.index(budget) + 0.08 * (index - (len(names) - 1) / 2) for budget in mine["budget"]]
        centre, low, high = (100 * mine[column].to_numpy() for column in ("difference", "low", "high"))
        ax.errorbar(x, centre, yerr=[centre - low, high - centre], color=color, capsize=3, label=str(name))
        for xi, yi, verdict_text in zip(x, centre, mine["verdict"], strict=True):
            filled = verdict_text != "not distinguishable"
            ax.plot(xi, yi, "o", color=color, markerfacecolor=color if filled else "white", markersize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(budgets)), [str(budget) for budget in budgets])
    ax.set_xlabel(budget_key)
    ax.set_ylabel(f"difference in test accuracy from {baseline} (points; 95%)")
    ax.set_title("The verdict depends on the budget (filled: distinguishable after Holm)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def per_class_difference_figure(difference: pd.Series, first: str, second: str) -> Figure:
    """Per-class test accuracy of `second` minus `first` (points), one bar per class."""
    fig, ax = subplots(figsize=(max(8, 0.28 * len(difference) + 2), 4.5), layout="constrained")
    colors = [VERDICT_COLORS["helps"] if value > 0 else VERDICT_COLORS["hurts"] for value in difference]
    ax.bar(range(len(difference)), 100 * difference.to_numpy(), color=colors)
    ax.set_xticks(range(len(difference)), [str(name) for name in difference.index], fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("accuracy difference (points)")
    ax.set_title(f"Per class: {second} minus {first} (green: {second} better)")
    return fig
