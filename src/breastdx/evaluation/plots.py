"""Plots for reports, written as PNG files: ROC curves, reliability diagrams, confusion matrices.

Matplotlib runs with the non-interactive Agg backend; every function saves one file and closes its figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

DPI = 110
"""Resolution of every PNG figure, dots per inch."""


def save_figure(fig: Any, path: Path, title: str | None = None) -> Path:
    """Lay out a Matplotlib figure (under ``title`` when given), write it to ``path`` as PNG at :data:`DPI`, close it.

    Every text of the figure is drawn as written: names from the data ("cost $5 to $6", "$$") are not read as
    Matplotlib mathtext, which would draw them without their dollar signs or fail with a ValueError.

    Returns:
        ``path``.
    """
    from matplotlib.text import Text

    if title is not None:
        fig.suptitle(title)
    for text in fig.findobj(Text):
        text.set_parse_math(False)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_finite(ax: Any, x: np.ndarray, y: Sequence[float], **kwargs: Any) -> None:
    """Plot ``y`` against ``x`` where ``y`` is finite (an epoch without a value, NaN, is left out)."""
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y)
    ax.plot(np.asarray(x, dtype=float)[ok], y[ok], **kwargs)


def plot_roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
                    title: str = "ROC curves") -> Path:
    """ROC curves of several models on one plot.

    Args:
        curves: Label (shown with its AUROC if given in the label) to ``(y_true (n,), prob (n,))``; ``y_true`` 1 for
            the positive class. A curve whose labels hold one class only is named in the legend, not drawn.
        path: PNG file to write.
        title: Plot title.
    """
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (y, p) in curves.items():
        if np.unique(np.asarray(y)).size < 2:  # one class: no false- or no true-positive rate, no curve
            ax.plot([], [], lw=1.5, label=f"{label}: one class only, no ROC")
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity (true-positive rate)",
           title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, n_bins: int = 10,
                     title: str = "Reliability diagram") -> Path:
    """Reliability diagram: observed frequency of malignancy against mean predicted probability per bin.

    Args:
        curves: Label to ``(y_true (n,), prob (n,))``.
        path: PNG file to write.
        n_bins: Equal-width probability bins.
    """
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, n_bins + 1)
    for label, (y, p) in curves.items():
        idx = np.minimum((np.asarray(p) * n_bins).astype(int), n_bins - 1)
        mean_p, freq = [], []
        for b in range(n_bins):
            sel = idx == b
            if sel.any():
                mean_p.append(np.mean(np.asarray(p)[sel]))
                freq.append(np.mean(np.asarray(y)[sel]))
        ax.plot(mean_p, freq, marker="o", ms=3, lw=1.2, label=label)
    ax.plot(edges, edges, color="grey", lw=0.8, ls="--", label="perfect calibration")
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency (positive class)", title=title,
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "Confusion matrix") -> Path:
    """Confusion matrix with counts (rows: true class, columns: predicted class).

    Args:
        matrix: Counts, shape ``(K, K)``; may be fractional (mean over repeats).
        class_names: ``K`` names in index order.
        path: PNG file to write.
    """
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(class_names), 1.4 + 1.1 * len(class_names)))
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            text = f"{m[i, j]:.0f}" if float(m[i, j]).is_integer() else f"{m[i, j]:.1f}"
            ax.text(j, i, text, ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_figure(fig, path)
