"""Calibration of class probabilities: temperature scaling, multiclass ECE, Brier score and NLL.

Temperature scaling divides the logits by one number ``T > 0`` fitted on validation cases by minimising the
negative log-likelihood. The predicted class (the argmax) does not change, so accuracy does not; with two
classes the ranking of cases (AUROC) does not change either, with three or more the one-vs-rest AUROC can
move slightly.

Definitions used in reports (``K`` classes, ``n`` cases, ``p_ik`` probabilities, ``y_i`` labels):

* NLL: ``-(1/n) sum_i log p_{i, y_i}``.
* Brier score (multiclass): ``(1/n) sum_i sum_k (p_ik - [y_i = k])^2``, in [0, 2] (for two classes this is
  twice the binary Brier score of the positive class).
* ECE (top label): 15 equal-width bins of the confidence ``max_k p_ik``;
  ``sum_b (n_b / n) |accuracy(b) - confidence(b)|``. The bins are closed on the left (Guo et al. close them on the
  right), as :func:`breastdx.evaluation.metrics.expected_calibration_error` says.

References:
    Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural networks.
    ICML, arXiv:1706.04599.
    Brier, G. W. (1950). Verification of forecasts expressed in terms of probability. Monthly Weather
    Review 78(1):1-3. doi:10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax
from scipy.special import softmax as _softmax

from breastdx.evaluation.metrics import ECE_BINS

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""Search interval of the temperature."""


def _check(labels: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=float)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, K) with K >= 2, got {z.shape}.")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},) to match the logits, got {y.shape}.")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must be integers in [0, {z.shape[1] - 1}], got {sorted(set(y.tolist()))[:6]}.")
    if not np.isfinite(z).all():
        raise ValueError("logits hold NaN or infinite values.")
    return y.astype(np.int64), z


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities ``softmax(logits / T)``.

    Shape:
        ``(..., K)`` -> ``(..., K)``.

    Raises:
        ValueError: If ``temperature`` is not positive.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    return _softmax(np.asarray(logits, dtype=float) / float(temperature), axis=-1)


def nll(labels: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under ``softmax(logits / T)``.

    Args:
        labels: Class indices ``(n,)``.
        logits: ``(n, K)``.
        temperature: ``T > 0``.

    Raises:
        ValueError: For mismatched shapes, labels out of range or non-finite logits.
    """
    y, z = _check(labels, logits)
    if y.size == 0:
        return float("nan")
    logp = log_softmax(z / float(temperature), axis=1)
    return float(-logp[np.arange(y.size), y].mean())


def fit_temperature(labels: np.ndarray, logits: np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature ``T`` that minimises the NLL of ``softmax(logits / T)`` on (validation) cases.

    The NLL is minimised over ``log T`` by bounded Brent search (the problem is one-dimensional and smooth).

    Args:
        labels: Class indices ``(n,)``.
        logits: ``(n, K)``, the network's outputs before the softmax.
        bounds: Search interval of ``T``.

    Returns:
        ``T`` in ``bounds``; 1.0 when there are no cases.

    Raises:
        ValueError: For mismatched shapes, labels out of range or non-finite logits.

    References:
        Guo et al. (2017). On calibration of modern neural networks. ICML, arXiv:1706.04599.
    """
    y, z = _check(labels, logits)
    if y.size == 0:
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    from scipy.optimize import minimize_scalar  # imported here: scipy.optimize costs every command ~0.5 s to import

    res = minimize_scalar(lambda t: nll(y, z, float(np.exp(t))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-5})
    return float(np.exp(res.x))


def multiclass_brier(labels: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Multiclass Brier score ``mean_i sum_k (p_ik - [y_i = k])^2``.

    Args:
        labels: Class indices ``(n,)`` or ``(B, n)``.
        prob: Probabilities ``(n, K)`` or ``(B, n, K)``.

    Returns:
        Array ``()`` or ``(B,)`` in [0, 2].
    """
    p = np.asarray(prob, dtype=float)
    y = np.asarray(labels, dtype=np.int64)
    onehot = np.eye(p.shape[-1])[y]
    return ((p - onehot) ** 2).sum(axis=-1).mean(axis=-1)


def top_label_ece(labels: np.ndarray, prob: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error of the top-label confidence, equal-width bins.

    Args:
        labels: Class indices ``(n,)`` or ``(B, n)``.
        prob: Probabilities ``(n, K)`` or ``(B, n, K)``.
        n_bins: Number of equal-width bins of [0, 1] (default 15, as Guo et al.).

    Returns:
        Array ``()`` or ``(B,)`` in [0, 1].

    References:
        Guo et al. (2017). ICML, arXiv:1706.04599 (eq. 3).
    """
    p = np.asarray(prob, dtype=float)
    y = np.asarray(labels, dtype=np.int64)
    conf = p.max(axis=-1)
    correct = (p.argmax(axis=-1) == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = np.zeros(conf.shape[:-1])
    for b in range(n_bins):
        in_bin = bins == b
        total = total + np.abs((correct * in_bin).sum(axis=-1) - (conf * in_bin).sum(axis=-1))
    return total / conf.shape[-1]


def calibration_summary(labels: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, dict[str, float]]:
    """NLL, Brier score and top-label ECE before (``T = 1``) and after temperature scaling.

    Args:
        labels: Class indices ``(n,)``.
        logits: ``(n, K)``.
        temperature: The fitted ``T``.

    Returns:
        ``{"before": {"nll", "brier", "ece"}, "after": {...}, "temperature": {"value": T}}``.
    """
    y, z = _check(labels, logits)
    out: dict[str, dict[str, float]] = {}
    for name, t in (("before", 1.0), ("after", float(temperature))):
        p = softmax(z, t)
        out[name] = {"nll": nll(y, z, t), "brier": float(multiclass_brier(y, p)), "ece": float(top_label_ece(y, p))}
    out["temperature"] = {"value": float(temperature)}
    return out
