"""Figures for people: every function takes arrays and returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only; never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter


def save_figure(fig: Figure, path: Path, writers: Sequence[SummaryWriter] = (), tag: str = "", step: int = 0) -> None:
    """Write `fig` as a PNG and, under `tag`, into each TensorBoard writer; then free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    for writer in writers:
        writer.add_figure(tag, fig, global_step=step, close=False)
    plt.close(fig)


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
    fig, ax = plt.subplots(figsize=(13, 11), layout="constrained")
    sns.heatmap(
        values,
        ax=ax,
        cmap="rocket_r",
        square=True,
        xticklabels=list(classes),
        yticklabels=list(classes),
        cbar_kws={"label": "fraction of true class" if normalize else "images", "shrink": 0.8},
        linewidths=0.0,
    )
    ax.set_xlabel("predicted", fontsize=13)
    ax.set_ylabel("true", fontsize=13)
    ax.tick_params(axis="both", labelsize=9, rotation=0)
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
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray_r")
        color = caption_colors[i] if caption_colors is not None else "black"
        ax.set_title(captions[i], fontsize=10, color=color)
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
    """Test accuracy (and macro accuracy) per configuration, best first."""
    ordered = results.sort_values("test_acc", ascending=False)
    long = ordered.melt(
        id_vars=["configuration"], value_vars=["test_acc", "test_macro_acc"], var_name="metric", value_name="accuracy"
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(ordered) + 2), 5), layout="constrained")
    sns.barplot(long, x="configuration", y="accuracy", hue="metric", ax=ax, palette="viridis")
    low = max(0.0, long["accuracy"].min() - 0.05)
    ax.set_ylim(low, min(1.0, long["accuracy"].max() + 0.02))
    ax.set_xlabel(", ".join(varied))
    ax.set_title("Test accuracy per configuration")
    ax.tick_params(axis="x", rotation=30)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    return fig


def validation_curves_figure(results: pd.DataFrame) -> Figure:
    """Validation accuracy per epoch, one line per job."""
    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    palette = sns.color_palette("husl", len(results))
    for color, (_, row) in zip(palette, results.iterrows(), strict=True):
        history = row["history"]
        ax.plot(range(1, len(history) + 1), history, marker="o", markersize=3, color=color, label=row["configuration"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def accuracy_heatmap_figure(results: pd.DataFrame, rows: str, columns: str) -> Figure:
    """Mean test accuracy for each pair of values of two swept parameters."""
    table = results.pivot_table(index=rows, columns=columns, values="test_acc", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.3 * len(table.columns) + 3, 0.7 * len(table) + 2), layout="constrained")
    sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", ax=ax, cbar_kws={"label": "test accuracy"})
    ax.set_title("Test accuracy")
    return fig


def class_samples_figure(samples: np.ndarray, classes: Sequence[str]) -> Figure:
    """(classes, rows, 28, 28) random samples: one column per class, its character on top."""
    num_classes, rows = samples.shape[:2]
    fig, axes = plt.subplots(rows, num_classes, figsize=(0.42 * num_classes, 0.46 * rows + 0.5), squeeze=False)
    for column in range(num_classes):
        for row in range(rows):
            ax = axes[row, column]
            ax.imshow(samples[column, row], cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].set_title(classes[column], fontsize=12, fontweight="bold")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.005, right=0.995, bottom=0.01, top=0.93)
    return fig


def class_distribution_figure(counts: pd.DataFrame) -> Figure:
    """Images per class in each split; `counts` has columns class, split, images."""
    fig, ax = plt.subplots(figsize=(15, 5), layout="constrained")
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
    fig, ax = plt.subplots(figsize=(16, 5.5), layout="constrained")
    sns.barplot(long, x="class", y="value", hue="metric", ax=ax, palette="muted", order=list(ordered["class"]))
    ax.set_ylim(max(0.0, long["value"].min() - 0.05), 1.0)
    ax.set_xlabel("character (worst F1 first)")
    ax.set_title("Per-class metrics (test)")
    ax.legend(ncols=4, loc="lower right")
    return fig


def confused_pairs_figure(pairs: list[tuple[str, str, int, np.ndarray]], examples: int = 8) -> Figure:
    """One row per (true, predicted, count, images) pair: the label, then example images."""
    rows = max(1, len(pairs))
    fig, axes = plt.subplots(rows, examples + 1, figsize=(1.2 * (examples + 1) + 1, 1.25 * rows), squeeze=False)
    for row, (true, predicted, count, images) in enumerate(pairs):
        axes[row, 0].text(0.5, 0.5, f"{true} → {predicted}\n{count}×", ha="center", va="center", fontsize=13)
        for column in range(examples + 1):
            axes[row, column].axis("off")
        for column, image in enumerate(images[:examples], start=1):
            axes[row, column].imshow(image, cmap="gray_r")
    fig.suptitle("Most-confused pairs (true → predicted, test)", fontsize=13)
    fig.tight_layout()
    return fig


def reliability_figure(confidence: np.ndarray, correct: np.ndarray, bins: int, ece: float) -> Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    accuracy = np.bincount(which, weights=correct, minlength=bins) / np.maximum(counts, 1)
    centers = (edges[:-1] + edges[1:]) / 2
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True, layout="constrained"
    )
    top.bar(centers[counts > 0], accuracy[counts > 0], width=1 / bins, edgecolor="black", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability diagram (ECE {ece:.3f})")
    top.legend(loc="upper left")
    bottom.bar(centers, counts, width=1 / bins, color="gray")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("images")
    return fig


def filters_figure(weights: np.ndarray, title: str, columns: int = 8) -> Figure:
    """(N, H, W) filters or weight images, each scaled symmetrically around zero."""
    rows = int(np.ceil(len(weights) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.3 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, weight in zip(axes.flat, weights, strict=False):
        limit = np.abs(weight).max() or 1.0
        ax.imshow(weight, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def feature_maps_figure(image: np.ndarray, maps: list[np.ndarray], channels: int = 8) -> Figure:
    """The input, then the first `channels` feature maps of each conv block, one block per row."""
    fig, axes = plt.subplots(len(maps), channels + 1, figsize=(1.3 * (channels + 1), 1.4 * len(maps) + 0.4))
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
    fig, axes = plt.subplots(
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
