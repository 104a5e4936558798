"""Comparing two classifiers on the same cases: paired bootstrap test of the AUROC difference, with DeLong's test.

Two models scored on the same test cases give correlated AUROCs: a case that is hard for one is often
hard for the other. Comparing their two confidence intervals ignores that correlation and is far too
conservative. A *paired* test resamples cases once for both models:

* **Paired bootstrap** (Efron & Tibshirani 1993, ch. 16): draw ``B`` resamples of the cases, stratified by
  class (positives and negatives are resampled separately, so every resample keeps the observed class
  counts and has an AUROC, as in pROC's default); in each, compute ``AUROC_a - AUROC_b`` on the same
  cases. The 95% interval is the percentile interval of these differences shifted by the bootstrap bias
  (:func:`breastdx.evaluation.metrics.bias_corrected_interval`, as every interval of breastdx). The
  two-sided p-value of "no difference" is the one that inverts the percentile interval:
  ``p = 2 * min(#{d* <= 0} + 1, #{d* >= 0} + 1) / (B + 1)``, capped at 1 (the ``+ 1`` counts the observed
  sample, so p is never 0). Identical scores give ``d* = 0`` in every resample, hence ``p = 1``.
* **DeLong's test** (DeLong, DeLong & Clarke-Pearson 1988), computed with the fast algorithm of Sun & Xu
  (2014): the variance of the AUROC difference from the structural components (placement values) of
  the Mann-Whitney statistic, and ``z = d / se``. It is reported beside the bootstrap as a cross-check;
  the two agree closely on samples of hundreds of cases.

References:
    DeLong, E. R., DeLong, D. M. & Clarke-Pearson, D. L. (1988). Comparing the areas under two or more
    correlated receiver operating characteristic curves: a nonparametric approach. Biometrics
    44(3):837-845. doi:10.2307/2531595
    Sun, X. & Xu, W. (2014). Fast implementation of DeLong's algorithm for comparing the areas under
    correlated receiver operating characteristic curves. IEEE Signal Processing Letters 21(11):1389-1393.
    doi:10.1109/LSP.2014.2337313
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap, ch. 13 and 16. Chapman & Hall.
    doi:10.1201/9780429246593
    Robin, X. et al. (2011). pROC. BMC Bioinformatics 12:77. doi:10.1186/1471-2105-12-77
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from breastdx.evaluation.metrics import auroc, bias_corrected_interval

_CHUNK = 200
"""Bootstrap resamples evaluated at once (bounds memory: ``_CHUNK x n`` floats per array)."""


def _check(y_true: Any, score_a: Any, score_b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    a = np.asarray(score_a, dtype=float)
    b = np.asarray(score_b, dtype=float)
    if y.ndim != 1 or a.shape != y.shape or b.shape != y.shape:
        raise ValueError(f"y_true, score_a and score_b must be one value per case of equal length, shape (n,); "
                         f"got shapes {y.shape}, {a.shape} and {b.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold labels 0 and 1 only (1 = positive); got values "
                         f"{sorted(set(np.unique(y).tolist()))[:6]}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("score_a and score_b must be finite (no NaN or infinite scores).")
    yb = y.astype(bool)
    if yb.all() or not yb.any():
        raise ValueError(f"An AUROC needs positive and negative cases; got {int(yb.sum())} positive of {y.size}.")
    return yb, a, b


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: ``V10`` per positive and ``V01`` per negative (ties count 1/2).

    ``V10_i`` is the fraction of negatives scored below positive ``i``; ``V01_j`` the fraction of positives
    scored above negative ``j``. Computed by ranks (Sun & Xu 2014).
    """
    m, n = pos.size, neg.size
    both = np.concatenate([pos, neg])
    r_all = rankdata(both)
    r_pos = rankdata(pos)
    r_neg = rankdata(neg)
    v10 = (r_all[:m] - r_pos) / n
    v01 = 1.0 - (r_all[m:] - r_neg) / m
    return v10, v01


def delong_test(y_true: Any, score_a: Any, score_b: Any) -> dict[str, float]:
    """DeLong's test of the difference of two correlated AUROCs (same cases).

    Args:
        y_true: Labels in {0, 1}, shape ``(n,)``; both classes present.
        score_a: Scores of model A (higher = more likely positive), shape ``(n,)``.
        score_b: Scores of model B, shape ``(n,)``.

    Returns:
        ``{"auroc_a", "auroc_b", "difference" (A - B), "se", "z", "p_value" (two-sided), "ci95": [low, high]
        (normal approximation)}``. When the difference has zero variance ``se`` is 0: with no difference (identical
        rankings) ``z`` is 0 and ``p_value`` 1, else (every placement alike, as a perfect model against a constant
        one) ``z`` is +-inf (null in JSON) and ``p_value`` 0.

    Raises:
        ValueError: For shapes that differ, labels other than 0/1, a missing class or non-finite scores.

    References:
        DeLong et al. (1988), doi:10.2307/2531595; Sun & Xu (2014), doi:10.1109/LSP.2014.2337313.
    """
    y, a, b = _check(y_true, score_a, score_b)
    m, n = int(y.sum()), int((~y).sum())
    v10 = np.empty((2, m))
    v01 = np.empty((2, n))
    for k, s in enumerate((a, b)):
        v10[k], v01[k] = _placements(s[y], s[~y])
    aucs = v10.mean(axis=1)
    s10 = np.cov(v10) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(v01) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se <= 1e-12:  # no spread: no difference (p = 1), or a difference every resample would show (p = 0)
        z, p = (0.0, 1.0) if abs(diff) <= 1e-12 else (float(np.copysign(np.inf, diff)), 0.0)
    else:
        z = diff / se
        p = float(2.0 * norm.sf(abs(z)))
    half = float(norm.ppf(0.975)) * se
    return {"auroc_a": float(aucs[0]), "auroc_b": float(aucs[1]), "difference": diff, "se": se, "z": float(z),
            "p_value": float(min(1.0, p)), "ci95": [diff - half, diff + half]}


def _cluster_differences(y: np.ndarray, a: np.ndarray, b: np.ndarray, groups: np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> np.ndarray:
    """AUROC(a) - AUROC(b) over ``n_boot`` resamples of the clusters (with replacement), each with all its cases."""
    if groups.shape != y.shape:
        raise ValueError(f"groups must have one id per case: shape {groups.shape} for {y.size} cases.")
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    out = np.empty(n_boot)
    done = tries = 0
    while done < n_boot:
        tries += 1
        if tries > 20 * n_boot:
            raise ValueError("groups: almost no resample of the patients holds both classes; too few patients.")
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if y[idx].all() or not y[idx].any():
            continue
        out[done] = auroc(y[idx], a[idx]) - auroc(y[idx], b[idx])
        done += 1
    return out


def paired_auroc_test(y_true: Any, score_a: Any, score_b: Any, *, n_boot: int = 2000, seed: int = 0,
                      alpha: float = 0.05, names: tuple[str, str] = ("a", "b"),
                      return_resamples: bool = False, groups: Any = None, unit: str = "patient") -> dict[str, Any]:
    """Paired, class-stratified bootstrap test of ``AUROC(score_a) - AUROC(score_b)`` on the same cases.

    With ``groups`` (a patient id per case), patients are resampled instead of cases, each with all its cases
    (the cluster bootstrap): patches of one patient are not independent, and a case-level interval would be too
    narrow. A resample that lacks a class is drawn again.

    Args:
        y_true: Labels in {0, 1} (1 = positive, e.g. tumour), shape ``(n,)``; both classes present.
        score_a: Scores of model A, shape ``(n,)`` (probabilities or logits: AUROC uses their order only).
        score_b: Scores of model B, shape ``(n,)``.
        n_boot: Bootstrap resamples (at least 1).
        seed: Seed of the resampling; the same inputs and seed give the same result.
        alpha: 1 - confidence level of the interval.
        names: Names of models A and B, written into the result.
        return_resamples: Add the ``B`` bootstrap differences under ``"resamples"`` (float64 ``(B,)``; for
            :func:`plot_auroc_difference`, not for JSON).
        groups: Patient (cluster) id per case, shape ``(n,)``, or None to resample cases.
        unit: What ``groups`` names ("patient", or "lesion" for the near-duplicate frames of one lesion): the
            result's count ``n_<unit>s`` and its method say it.

    Returns:
        ``{"model_a", "model_b", "n", "n_positive", "n_<unit>s" (None without ``groups``), "auroc_a", "auroc_b",
        "difference" (A - B), "ci95": [low, high], "p_value" (two-sided), "n_boot", "seed", "method",
        "delong": {...}}``:
        ``delong`` is :func:`delong_test` on the same data. All values are plain Python numbers (JSON-ready)
        unless ``return_resamples`` is set.

    Raises:
        ValueError: For shapes that differ, labels other than 0/1, a missing class, non-finite scores or
            ``n_boot < 1``.

    References:
        Efron & Tibshirani (1993), ch. 16, doi:10.1201/9780429246593; DeLong et al. (1988),
        doi:10.2307/2531595.
    """
    y, a, b = _check(y_true, score_a, score_b)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}.")
    n_boot = int(n_boot)
    pos_idx = np.flatnonzero(y)
    neg_idx = np.flatnonzero(~y)
    yy = np.concatenate([np.ones(pos_idx.size, bool), np.zeros(neg_idx.size, bool)])
    value_a, value_b = float(auroc(y, a)), float(auroc(y, b))
    diff = value_a - value_b
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    if groups is not None:
        diffs = _cluster_differences(y, a, b, np.asarray(groups), n_boot, rng)
    for start in range(0, n_boot if groups is None else 0, _CHUNK):
        k = min(_CHUNK, n_boot - start)
        idx = np.concatenate([rng.choice(pos_idx, size=(k, pos_idx.size)),
                              rng.choice(neg_idx, size=(k, neg_idx.size))], axis=1)
        labels = np.broadcast_to(yy, idx.shape)
        diffs[start:start + k] = auroc(labels, a[idx]) - auroc(labels, b[idx])
    low, high = bias_corrected_interval(diffs, diff, alpha)
    below = int(np.count_nonzero(diffs <= 0.0))
    above = int(np.count_nonzero(diffs >= 0.0))
    p = min(1.0, 2.0 * min(below + 1, above + 1) / (n_boot + 1))
    out = {
        "model_a": names[0], "model_b": names[1], "n": int(y.size), "n_positive": int(y.sum()),
        f"n_{unit}s": None if groups is None else int(np.unique(np.asarray(groups)).size),
        "auroc_a": value_a, "auroc_b": value_b, "difference": float(diff), "ci95": [low, high],
        "p_value": float(p), "n_boot": n_boot, "seed": int(seed),
        "method": ((f"paired bootstrap over {unit}s (each with all its cases)" if groups is not None else
                    "paired bootstrap over cases, stratified by class") + "; percentile interval shifted by the "
                   "bootstrap bias; two-sided p-value inverting the percentile interval, 2 * min(#{d* <= 0} + 1, "
                   "#{d* >= 0} + 1) / (B + 1)"),
        "delong": delong_test(y, a, b),
    }
    if return_resamples:
        out["resamples"] = diffs
    return out


def plot_auroc_difference(result: dict[str, Any], path: Any, title: str | None = None) -> Any:
    """Histogram of the bootstrap AUROC differences with the estimate, its 95% interval and zero.

    Args:
        result: Output of :func:`paired_auroc_test` with ``return_resamples=True``.
        path: PNG file to write.
        title: Figure title; default names the two models.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``result`` holds no ``"resamples"``.
    """
    import matplotlib.pyplot as plt

    from breastdx.evaluation.plots import save_figure

    if "resamples" not in result:
        raise ValueError("plot_auroc_difference needs the bootstrap differences: call paired_auroc_test with "
                         "return_resamples=True.")
    d = np.asarray(result["resamples"], dtype=float)
    low, high = result["ci95"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(d, bins=50, color="#8fb3d9", edgecolor="white")
    ax.axvline(result["difference"], color="#1f4e79", lw=2, label=f"difference {result['difference']:+.4f}")
    ax.axvspan(low, high, color="#1f4e79", alpha=0.12, label=f"95% CI [{low:+.4f}, {high:+.4f}]")
    ax.axvline(0.0, color="#c0392b", lw=1.2, ls="--", label="no difference")
    ax.set(xlabel=f"AUROC({result['model_a']}) - AUROC({result['model_b']})", ylabel="bootstrap resamples",
           title=title or f"Paired bootstrap: {result['model_a']} vs {result['model_b']} (p = {result['p_value']:.3g}, "
                          f"n = {result['n']})")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)
