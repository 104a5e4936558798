"""Binary diagnostic metrics, vectorised over bootstrap resamples, with percentile confidence intervals.

The positive class (label 1) is malignant / tumour throughout. Every function accepts a batch of
resamples: arrays of shape ``(B, n)`` give ``B`` values at once, which keeps a 2000-resample bootstrap
fast. A metric that is undefined on a sample (for example PPV with no positive prediction, or AUROC with
one class only) is NaN, never a made-up number.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

BINARY_METRICS = (
    "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "auroc", "brier", "ece",
)
"""Names of the binary metrics, in report order."""

ECE_BINS = 15


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def auroc(y_true: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Area under the ROC curve by the Mann-Whitney U statistic (ties count one half).

    Args:
        y_true: Labels in {0, 1}, shape ``(n,)`` or ``(B, n)``.
        prob: Scores, same shape as ``y_true`` (higher means more likely positive).

    Returns:
        Array of shape ``()`` or ``(B,)`` in [0, 1]; NaN where a row holds one class only.

    References:
        Hanley, J. A. & McNeil, B. J. (1982). Radiology 143(1):29-36. doi:10.1148/radiology.143.1.7063747
    """
    y = np.atleast_2d(np.asarray(y_true)).astype(bool)
    p = np.atleast_2d(np.asarray(prob, dtype=float))
    from scipy.stats import rankdata  # imported here: scipy.stats costs every command ~0.4 s to import

    ranks = rankdata(p, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    u = (ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    out = _div(u, n_pos * n_neg)
    return out[0] if np.ndim(y_true) == 1 else out


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error of the positive-class probability, equal-width bins.

    ``ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|`` over ``n_bins`` bins of [0, 1]. Bin ``b`` is
    ``[b/M, (b+1)/M)``, the last one ``[(M-1)/M, 1]``: closed on the left, whereas Guo et al. close them on the
    right, ``((b-1)/M, b/M]``. The two differ only for a probability exactly on an inner edge, such as the vote
    fractions 0.2, 0.4, ... of a random forest or k-NN with 15 bins; breastdx keeps the left-closed bins because
    its published WDBC figures were computed with them (closing them on the right moves the random forest's and
    k-NN's ECE by +0.0002 and +0.0005).

    Args:
        y_true: Labels in {0, 1}, shape ``(n,)`` or ``(B, n)``.
        prob: Probabilities of the positive class in [0, 1], same shape.
        n_bins: Number of equal-width bins (default 15).

    Returns:
        Array of shape ``()`` or ``(B,)`` in [0, 1].

    References:
        Naeini, Cooper & Hauskrecht (2015). AAAI. Guo et al. (2017). ICML, arXiv:1706.04599
    """
    y = np.atleast_2d(np.asarray(y_true, dtype=float))
    p = np.atleast_2d(np.asarray(prob, dtype=float))
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    n = y.shape[1]
    total = np.zeros(y.shape[0])
    for b in range(n_bins):
        in_bin = bins == b
        gap = np.abs((y * in_bin).sum(axis=1) - (p * in_bin).sum(axis=1))
        total += gap
    out = total / n
    return out[0] if np.ndim(y_true) == 1 else out


def binary_metrics(
    y_true: np.ndarray, prob: np.ndarray, pred: np.ndarray | None = None, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """All binary metrics of :data:`BINARY_METRICS`.

    Args:
        y_true: Labels in {0, 1} (1 = malignant), shape ``(n,)`` or ``(B, n)``.
        prob: Probability of malignancy in [0, 1], same shape.
        pred: Predicted labels in {0, 1}, same shape; default ``prob >= threshold``.
        threshold: Decision threshold used when ``pred`` is None.

    Returns:
        Metric name to array of shape ``()`` or ``(B,)``. Threshold metrics (accuracy ... f1) use
        ``pred``; AUROC, Brier score and ECE use ``prob``.

    Raises:
        ValueError: If shapes differ, labels are not in {0, 1} or a probability is NaN or infinite.
    """
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob must have the same shape, got {y.shape} and {p.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold labels 0 (benign) and 1 (malignant) only.")
    if not np.isfinite(p).all():  # NaN >= threshold is False: an undefined case would count as a benign call
        raise ValueError("prob holds NaN or infinite values; every case needs a probability of malignancy.")
    yhat = (p >= threshold) if pred is None else np.asarray(pred).astype(bool)
    if yhat.shape != y.shape:
        raise ValueError(f"pred must have the shape of y_true {y.shape}, got {yhat.shape}.")
    yb = y.astype(bool)
    axis = -1
    tp = (yhat & yb).sum(axis=axis)
    tn = (~yhat & ~yb).sum(axis=axis)
    fp = (yhat & ~yb).sum(axis=axis)
    fn = (~yhat & yb).sum(axis=axis)
    n = y.shape[-1]
    return {**_confusion_metrics(tp, tn, fp, fn, np.full_like(tp, n)),
            "auroc": auroc(y, p), "brier": ((p - y) ** 2).mean(axis=axis), "ece": expected_calibration_error(y, p)}


def _confusion_metrics(tp: np.ndarray, tn: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                       n: np.ndarray) -> dict[str, np.ndarray]:
    """The threshold metrics of :data:`BINARY_METRICS` from confusion counts (NaN where undefined)."""
    sens = _div(tp, tp + fn)
    spec = _div(tn, tn + fp)
    return {
        "accuracy": _div(tp + tn, n),
        "balanced_accuracy": (sens + spec) / 2.0,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


def binary_metrics_weighted(counts: np.ndarray, y_true: np.ndarray, prob: np.ndarray,
                            pred: np.ndarray | None = None, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """:func:`binary_metrics` of ``B`` resamples given as case multiplicities, without building them.

    Resample ``b`` holds case ``i`` ``counts[b, i]`` times. Every metric of :func:`binary_metrics` is a sum
    over cases (the AUROC a sum over positive-negative pairs, ties counting one half), so each is a matrix
    product with ``counts``: the same values as :func:`binary_metrics` on the expanded resamples, up to
    floating-point rounding, in a small fraction of the time.

    Args:
        counts: Multiplicities, shape ``(B, n)``, each row summing to the resample size.
        y_true: Labels in {0, 1}, shape ``(n,)``.
        prob: Probability of malignancy in [0, 1], shape ``(n,)``.
        pred: Predicted labels in {0, 1}, shape ``(n,)``; default ``prob >= 0.5``.
        n_bins: ECE bins.

    Returns:
        Metric name to an array of shape ``(B,)``.
    """
    c = np.asarray(counts, dtype=float)
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(prob, dtype=float)
    yhat = (p >= 0.5) if pred is None else np.asarray(pred).astype(bool)
    m = c.sum(axis=1)
    tp, fn = c @ (yhat & y), c @ (~yhat & y)
    fp, tn = c @ (yhat & ~y), c @ (~yhat & ~y)
    # AUROC: cases in score order; each positive outranks the negatives of lower scores, ties count one half
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    first = np.r_[True, ps[1:] != ps[:-1]]                 # first case of each group of tied scores
    start = np.flatnonzero(first)[np.cumsum(first) - 1]      # per case, the first index of its group
    end = np.r_[np.flatnonzero(first)[1:], ps.size][np.cumsum(first) - 1]  # one past its group's last index
    sorted_counts = np.ascontiguousarray(c.T)[order]         # (n, B): row gathers are fast, column ones are not
    neg_cum = np.zeros((ps.size + 1, c.shape[0]))
    np.cumsum(sorted_counts * ~ys[:, None], axis=0, out=neg_cum[1:])  # weighted negatives up to each position
    pos_w = sorted_counts * ys[:, None]
    below, tied = neg_cum[start], neg_cum[end] - neg_cum[start]
    u = (pos_w * (below + 0.5 * tied)).sum(axis=0)
    n_pos, n_neg = pos_w.sum(axis=0), neg_cum[-1]
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    in_bin = np.zeros((p.size, n_bins))
    in_bin[np.arange(p.size), bins] = 1.0
    gap = np.abs(c @ (in_bin * y[:, None]) - c @ (in_bin * p[:, None])).sum(axis=1)
    return {**_confusion_metrics(tp, tn, fp, fn, m),
            "auroc": _div(u, n_pos * n_neg), "brier": _div(c @ (p - y) ** 2, m), "ece": _div(gap, m)}


def bootstrap_ci(
    y_true: np.ndarray,
    prob: np.ndarray,
    pred: np.ndarray | None = None,
    *,
    metric_fn: MetricFn | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, float | list[float]]]:
    """Metrics with percentile-bootstrap 95% confidence intervals over cases, shifted by the bootstrap bias.

    With repeated cross-validation, pass one row of out-of-fold predictions per repeat: the value is
    the mean of the metric over repeats, and each bootstrap resample draws cases (the same cases for
    every repeat), so the interval reflects the sampling of patients rather than the repeat-to-repeat
    spread, which would be far too narrow.

    Args:
        y_true: Labels in {0, 1}, shape ``(n,)``.
        prob: Probability of malignancy, shape ``(n,)`` or ``(R, n)`` for ``R`` repeats.
        pred: Predicted labels, same shape as ``prob``; default ``prob >= 0.5``.
        metric_fn: ``(y (B, n), prob (B, n), pred (B, n)) -> {name: (B,)}``; default :func:`binary_metrics`.
        n_boot: Number of bootstrap resamples.
        seed: Seed of the resampling.
        alpha: 1 - confidence level.

    Returns:
        ``{name: {"value": float, "ci95": [low, high]}}``; NaN values are written as None by JSON writers. A
        resample on which a metric is undefined (NaN: no malignant case for the sensitivity, one class for the
        AUROC, no predicted positive for the PPV) is left out of that metric's interval, and how many were left
        out, per metric, is logged (INFO, logger ``breastdx.evaluation.metrics``); the interval is NaN when every
        resample is undefined.

    Raises:
        ValueError: As :func:`binary_metrics` with the default ``metric_fn`` (a NaN or infinite probability too).

    References:
        Efron, B. & Tibshirani, R. (1993). An Introduction to the Bootstrap. Chapman & Hall.
    """
    fn = metric_fn or (lambda y, p, d: binary_metrics(y, p, pred=d))
    y = np.asarray(y_true)
    p = np.atleast_2d(np.asarray(prob, dtype=float))
    d = (p >= 0.5) if pred is None else np.atleast_2d(np.asarray(pred))
    n = y.shape[0]
    point: dict[str, list[float]] = {}
    for r in range(p.shape[0]):
        for k, v in fn(y, p[r], d[r]).items():
            point.setdefault(k, []).append(float(v))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot: dict[str, np.ndarray] = {}
    if metric_fn is None:  # the binary metrics are sums over cases: resample by multiplicities, not by copies
        counts = np.bincount((np.arange(n_boot)[:, None] * n + idx).ravel(), minlength=n_boot * n)
        counts = counts.reshape(n_boot, n).astype(float)
        for r in range(p.shape[0]):
            for k, v in binary_metrics_weighted(counts, y, p[r], d[r]).items():
                boot[k] = boot.get(k, 0.0) + v / p.shape[0]
    else:
        yb = y[idx]
        for r in range(p.shape[0]):
            for k, v in fn(yb, p[r][idx], d[r][idx]).items():
                boot[k] = boot.get(k, 0.0) + np.asarray(v, dtype=float) / p.shape[0]
    left_out = {k: int(np.count_nonzero(~np.isfinite(v))) for k, v in boot.items()}
    left_out = {k: c for k, c in left_out.items() if 0 < c < n_boot}
    if left_out:
        log.info("bootstrap over %d cases: resamples on which a metric is undefined (a class, or a predicted class, "
                 "missing) are left out of its interval: %s of %d resamples", n,
                 ", ".join(f"{k} {c}" for k, c in left_out.items()), n_boot)
    out: dict[str, dict[str, float | list[float]]] = {}
    for k, values in point.items():
        value = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        low, high = bias_corrected_interval(boot[k], value, alpha)
        out[k] = {"value": value, "ci95": [low, high]}
    return out


def bias_corrected_interval(boot: np.ndarray, value: float, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of a bootstrap distribution, shifted by the bootstrap estimate of bias.

    ``bias = median(boot) - value``; the interval is ``[q(alpha/2) - bias, q(1 - alpha/2) - bias]``,
    kept at or above 0 when no resample is negative and at or below 1 when none exceeds 1 (so a
    proportion never leaves [0, 1]). For an unbiased statistic this is the plain
    percentile interval. A statistic that resampling inflates, such as the ECE (duplicated cases make bins
    look more miscalibrated), would otherwise get an interval that misses its own estimate; the shift keeps
    the estimate inside: ``low <= value <= high`` always holds.

    Args:
        boot: Bootstrap values, shape ``(B,)``; NaN entries are ignored.
        value: The point estimate.
        alpha: 1 - confidence level.

    Returns:
        ``(low, high)``; NaN when no resample is finite.

    References:
        Efron, B. & Tibshirani, R. (1993). An Introduction to the Bootstrap, ch. 10 (bias) and 13
        (percentile intervals). Chapman & Hall. doi:10.1201/9780429246593
    """
    b = np.asarray(boot, dtype=float)
    b = b[np.isfinite(b)]
    if b.size == 0 or not np.isfinite(value):
        return float("nan"), float("nan")
    bias = float(np.median(b)) - value
    low, high = np.percentile(b, [100 * alpha / 2, 100 * (1 - alpha / 2)]) - bias
    # keep a metric in its natural range: [0, ...) when nothing is negative, (..., 1] when nothing exceeds 1
    floor = 0.0 if min(float(b.min()), value) >= 0 else -np.inf
    ceiling = 1.0 if max(float(b.max()), value) <= 1 else np.inf
    return float(np.clip(low, floor, ceiling)), float(np.clip(high, floor, ceiling))


def threshold_for_sensitivity(y_true: np.ndarray, prob: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity on ``(y_true, prob)`` is at least ``target``.

    Predictions are positive when ``prob >= threshold``. The highest such threshold keeps specificity
    as high as the target sensitivity allows.

    Args:
        y_true: Labels in {0, 1}, shape ``(n,)``; must hold at least one positive.
        prob: Probability of malignancy, shape ``(n,)``.
        target: Target sensitivity in (0, 1].

    Returns:
        A threshold in [0, 1].

    Raises:
        ValueError: If ``target`` is outside (0, 1] or there is no positive case.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"Target sensitivity must be in (0, 1], got {target}.")
    y = np.asarray(y_true).astype(bool)
    pos = np.sort(np.asarray(prob, dtype=float)[y])[::-1]
    if pos.size == 0:
        raise ValueError("Cannot choose a threshold for a target sensitivity without malignant cases.")
    k = int(np.ceil(target * pos.size - 1e-9))  # positives that must score >= threshold
    return float(pos[max(k, 1) - 1])
