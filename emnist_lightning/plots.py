"""Figures for people: every function takes arrays and returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only; never a window

import matplotlib.pyplot as plt
import numpy as np
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
