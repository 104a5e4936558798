"""Percentile-bootstrap confidence intervals: of a mean over cases (per-image scores, proportions), and of any
statistic over patients (:func:`patient_bootstrap`, each patient resampled with all their images)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def mean_ci(values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0,
            alpha: float = 0.05) -> dict[str, float | list[float]]:
    """Mean of per-case values with a percentile-bootstrap confidence interval.

    For values in {0, 1} this is a proportion with its interval (:func:`proportion_ci` when none or all may be
    positive). NaN and infinite values are dropped first.

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


def proportion_ci(indicators: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0,
                  alpha: float = 0.05) -> dict[str, float | list[float]]:
    """A share of cases (``indicators`` in {0, 1}; NaN and infinite values dropped) with its interval: :func:`mean_ci`'s
    bootstrap, but the Wilson score interval when none or all of the cases count (0 of 10 lesions missed), where every
    bootstrap resample is the same and the percentile interval collapses to the point, claiming a certainty that 10
    cases cannot give (Wilson 1927, doi:10.1080/01621459.1927.10502953; Brown, Cai & DasGupta 2001,
    doi:10.1214/ss/1009213286).

    Returns:
        ``{"value", "ci95", "n"}`` as :func:`mean_ci`.

    Raises:
        ValueError: As :func:`mean_ci`, or if a value is neither 0 nor 1.
    """
    v = np.asarray(indicators, dtype=float)
    if v.ndim != 1 or n_boot < 1:  # refused by mean_ci, with its message
        return mean_ci(v, n_boot, seed, alpha)
    v = v[np.isfinite(v)]
    if not np.isin(v, (0.0, 1.0)).all():
        raise ValueError("proportion_ci expects indicators of 0 or 1 per case.")
    k = int(v.sum())
    if v.size and k in (0, v.size):  # every resample alike: no bootstrap to run
        return {"value": k / v.size, "ci95": list(wilson_interval(k, int(v.size), alpha)), "n": int(v.size)}
    return mean_ci(v, n_boot, seed, alpha)


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (``n`` >= 1), within [0, 1].

    Raises:
        ValueError: If ``n`` < 1 or ``successes`` is outside [0, n].
    """
    from scipy.stats import norm

    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n and n >= 1, got {successes} of {n}.")
    z = float(norm.ppf(1 - alpha / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, float(centre - half))  # exact bounds at the edges, no rounding
    return low, 1.0 if successes == n else min(1.0, float(centre + half))


def patient_bootstrap(statistic: Callable[[np.ndarray], float], groups: np.ndarray, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
    """A statistic of cases with a percentile 95% interval from resampling patients (each with all their cases).

    Args:
        statistic: ``case indices (m,) -> float`` (NaN when undefined on a resample, e.g. one class only).
        groups: Patient id per case ``(n,)``.
        n_boot: Resamples of the patients.
        seed: Seed of the resampling.

    Returns:
        ``{"value", "ci95": [low, high], "n_patients", "n_resamples"}`` (resamples with a NaN or infinite statistic
        are left out and counted out of ``n_resamples``).

    References:
        Field, C. A. & Welsh, A. H. (2007). Bootstrapping clustered data. J R Stat Soc B 69(3):369-390,
        doi:10.1111/j.1467-9868.2007.00593.x
    """
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    value = float(statistic(np.arange(inverse.size)))
    rng = np.random.default_rng(seed)
    boot = np.array([statistic(np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]))
                     for _ in range(n_boot)], dtype=float)
    boot = boot[np.isfinite(boot)]
    low, high = (np.percentile(boot, [2.5, 97.5]).tolist() if boot.size else [float("nan")] * 2)
    return {"value": value, "ci95": [float(low), float(high)], "n_patients": len(members),
            "n_resamples": int(boot.size)}
