"""Figures for people: every function takes arrays and returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only; never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


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
