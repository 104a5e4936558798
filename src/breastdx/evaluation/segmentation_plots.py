"""Plots for segmentation reports: per-image score distributions and training curves (PNG files).

Every function saves one file and closes its figure (:func:`breastdx.evaluation.plots.save_figure`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

import matplotlib.pyplot as plt

from breastdx.evaluation.plots import plot_finite, save_figure


def plot_score_distribution(values: dict[str, Sequence[float]], path: Path, ylabel: str, title: str,
                            ylim: tuple[float, float] | None = None) -> Path:
    """Box plot with the individual values (jittered dots) of a per-image score, one box per group.

    Args:
        values: Group name (e.g. class) to per-image values.
        path: PNG file to write.
        ylabel: Axis label, with the unit.
        title: Plot title.
        ylim: Fixed y range, or None.
    """
    names = [k for k, v in values.items() if len(v)]
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * max(len(names), 1), 4))
    data = [np.asarray(values[k], dtype=float) for k in names]
    if names:
        ax.boxplot(data, showfliers=False, widths=0.5)
        ax.set_xticks(range(1, len(names) + 1), [f"{k}\n(n={len(v)})" for k, v in zip(names, data)])
    rng = np.random.default_rng(0)
    for i, v in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, size=v.size), v, s=8, alpha=0.5, color="tab:blue")
    ax.set(ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_training_curves(log: dict[str, list[float]], path: Path, title: str = "Training") -> Path:
    """Losses and validation scores per epoch (from :func:`breastdx.training.trainer.read_training_log`).

    Args:
        log: ``epoch`` and metric columns (``train_loss``, ``val_loss``, ``val_dice``, ...).
        path: PNG file to write.
        title: Plot title.
    """
    epochs = log.get("epoch", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in ("train_loss", "val_loss"):
        if name in log:
            plot_finite(ax1, epochs, log[name], label=name)
    ax1.set(xlabel="epoch", ylabel="Dice + cross-entropy loss", title="Loss")
    ax1.legend(fontsize=8)
    for name in sorted(k for k in log if k.startswith("val_") and k != "val_loss"):
        plot_finite(ax2, epochs, log[name], label=name)
    ax2.set(xlabel="epoch", ylabel="value", title="Validation", ylim=(0, 1))
    ax2.legend(fontsize=8)
    return save_figure(fig, path, title)
