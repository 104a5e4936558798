"""Percentile-bootstrap confidence interval of a mean over cases (per-image scores, proportions)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def mean_ci(values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0,
            alpha: float = 0.05) -> dict[str, float | list[float]]:
    """Mean of per-case values with a percentile-bootstrap confidence interval.

    For values in {0, 1} this is a proportion with its interval. NaN values are dropped first.

    Args:
        values: One value per case, shape ``(n,)``.
        n_boot: Number of bootstrap resamples of the cases.
        seed: Seed of the resampling.
        alpha: 1 - confidence level (0.05 gives a 95% interval).

    Returns:
        ``{"value": mean, "ci95": [low, high], "n": n}``; value and bounds are NaN when no value is left.
        With one case the interval is that value twice.

    Raises:
        ValueError: If ``values`` is not one-dimensional or ``n_boot`` is below 1.

    References:
        Efron, B. & Tibshirani, R. (1993). An Introduction to the Bootstrap. Chapman & Hall.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"mean_ci expects one value per case, shape (n,), got shape {v.shape}.")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}.")
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    boot = v[idx].mean(axis=1)
    low, high = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": float(v.mean()), "ci95": [float(low), float(high)], "n": int(v.size)}
