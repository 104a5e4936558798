"""Prediction sets with guaranteed coverage: split conformal prediction with adaptive prediction sets (APS).

A classifier's temperature-scaled probabilities on the calibration split (the validation split, whose cases the
network never trained on) give one conformity score per case. The ``ceil((n + 1) * level)``-th smallest score,
``qhat``, makes the sets below hold the true class with probability at least ``level`` for a new case exchangeable
with the calibration cases (marginal coverage; not per class, and not under a shift of scanner or hospital).

Two scores, both stored in a model folder:

* ``aps`` (default; Romano et al. 2020): the probability mass of the classes ranked above the true class plus
  ``u`` times the true class's probability; the set holds the most probable classes while the mass before a
  class plus ``u`` times its probability stays within ``qhat``. ``u`` is uniform in [0, 1): here it is drawn from
  the SHA-256 of the case's rounded probabilities, not from a random generator, so that the same image always gets
  the same set in ``predict``, ``evaluate`` and the service. A set may be empty (the model is confident and
  ``qhat`` small); it is then given the most probable class, which only adds coverage. The deterministic ``u``
  is pseudo-random rather than independent of the image, so the guarantee holds as for a random ``u`` only
  approximately.
* ``lac`` (least ambiguous set-valued classifier; Sadinle, Lei & Wasserman 2019, JASA, doi:10.1080/
  01621459.2017.1395341): score ``1 - p(true class)``, set ``{k: p_k >= 1 - qhat}``; the smallest sets on
  average, but not adaptive to how hard a case is.

The temperature is fitted on the same split, a one-parameter fit that the guarantee ignores.

References:
    Romano, Y., Sesia, M. & Candès, E. (2020). Classification with valid and adaptive coverage. NeurIPS 33,
    arXiv:2006.02544.
    Angelopoulos, A. N. & Bates, S. (2021). A gentle introduction to conformal prediction and distribution-free
    uncertainty quantification. arXiv:2107.07511.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from breastdx.evaluation.ci import mean_ci, wilson_interval

DEFAULT_LEVEL = 0.9
"""Coverage level of the stored default set."""

LEVELS = (0.8, 0.85, 0.9, 0.95, 0.99)
"""Levels whose quantile is stored in a model folder (``--conformal-level`` chooses among them)."""

METHODS = ("aps", "lac")
"""Conformity scores (see the module docstring); the first is the default."""


def tiebreak(prob: np.ndarray) -> np.ndarray:
    """The ``u`` of randomised APS per case, float64 ``(n,)`` in [0, 1): from the SHA-256 of the case's
    probabilities rounded to 6 decimals, so the same image always gets the same ``u``."""
    p = np.round(np.asarray(prob, dtype=np.float64), 6) + 0.0  # + 0.0: no negative zero
    return np.array([int(hashlib.sha256(row.tobytes()).hexdigest()[:13], 16) / 16**13 for row in p])


def conformity_scores(prob: np.ndarray, labels: np.ndarray, method: str = "aps") -> np.ndarray:
    """The conformity score of each case (larger: the true class looks less likely).

    Args:
        prob: Class probabilities, float ``(n, K)``, rows summing to 1.
        labels: True class indices, int ``(n,)`` in ``[0, K)``.
        method: ``aps`` or ``lac``.

    Returns:
        float64 ``(n,)`` in [0, 1].

    Raises:
        ValueError: If the shapes disagree, a probability is NaN or infinite, a label is out of range or the method
            is unknown.
    """
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"prob must be (n, K) and labels (n,), got {p.shape} and {y.shape}.")
    if not np.isfinite(p).all():  # a NaN score sorts last and could become the stored quantile
        rows = np.flatnonzero(~np.isfinite(p).all(axis=1))[:5].tolist()
        raise ValueError(f"prob holds NaN or infinite values (rows {rows}...); every case needs finite class "
                         f"probabilities.")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got {y.min()}..{y.max()}.")
    true_p = p[np.arange(len(y)), y]
    if method == "lac":
        return 1.0 - true_p
    if method != "aps":
        raise ValueError(f"Unknown conformal method {method!r}; expected one of {', '.join(METHODS)}.")
    above = np.where(p > true_p[:, None], p, 0.0).sum(axis=1)
    return above + tiebreak(p) * true_p


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The finite-sample quantile: the ``ceil((n + 1) * level)``-th smallest score, or ``inf`` (every class) when
    ``n`` is too small for the level.

    Raises:
        ValueError: If ``level`` is not in (0, 1) or there are no scores.
    """
    if not 0 < level < 1:
        raise ValueError(f"The conformal level must be in (0, 1), got {level}.")
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("No calibration scores: the calibration split is empty.")
    k = math.ceil((s.size + 1) * level)
    return float("inf") if k > s.size else float(s[k - 1])


def prediction_sets(prob: np.ndarray, qhat: float, method: str = "aps") -> np.ndarray:
    """Boolean ``(n, K)``: the prediction set of each case (see the module docstring); never empty. A class is in
    the set when its conformity score (:func:`conformity_scores`) is at most ``qhat`` (the most probable class when
    none is), so classes of equal probability are in or out together.

    Raises:
        ValueError: If the method is unknown.
    """
    p = np.asarray(prob, dtype=np.float64)
    if method == "lac":
        out = p >= 1.0 - qhat - 1e-12
    elif method == "aps":
        # the mass of the classes strictly more probable than each class, as conformity_scores counts it (a class
        # tied with another is scored as if first of the two, so both must be in or out together)
        above = np.where(p[:, None, :] > p[:, :, None], p[:, None, :], 0.0).sum(axis=2)
        out = above + tiebreak(p)[:, None] * p <= qhat + 1e-12
    else:
        raise ValueError(f"Unknown conformal method {method!r}; expected one of {', '.join(METHODS)}.")
    empty = ~out.any(axis=1)
    out[empty, p[empty].argmax(axis=1)] = True
    return out


def fit_conformal(labels: np.ndarray, prob: np.ndarray, split: str = "validation") -> dict[str, Any]:
    """The conformal record of a model folder's ``meta.json``, from the calibration cases.

    Args:
        labels: True class indices of the calibration cases, int ``(n,)``.
        prob: Their temperature-scaled probabilities, float ``(n, K)``.
        split: The calibration split's name, for the record.

    Returns:
        ``{"method": "aps", "level": 0.9, "qhat": q, "quantiles": {"aps": {"0.8": q, ...}, "lac": {...}},
        "n_calibration": n, "split": split}``; a quantile is None (JSON null) where ``n`` is too small for its
        level, which means every class.

    Raises:
        ValueError: As :func:`conformity_scores`, or if there are no cases.
    """
    quantiles = {}
    for method in METHODS:
        scores = conformity_scores(prob, labels, method)
        quantiles[method] = {f"{lv:g}": _rounded(conformal_quantile(scores, lv)) for lv in LEVELS}
    return {"method": METHODS[0], "level": DEFAULT_LEVEL, "qhat": quantiles[METHODS[0]][f"{DEFAULT_LEVEL:g}"],
            "quantiles": quantiles, "n_calibration": int(len(labels)), "split": split}


def _rounded(q: float) -> float | None:
    return round(q, 6) if math.isfinite(q) else None


def quantile_for(conformal: dict[str, Any], level: float | None = None,
                 method: str | None = None) -> tuple[str, float, float]:
    """``(method, level, qhat)`` of a model folder's conformal record, at the given or default method and level.

    Raises:
        ValueError: If the record has no quantile for that method and level; the message lists what it has.
    """
    m = method or conformal.get("method", METHODS[0])
    lv = float(conformal.get("level", DEFAULT_LEVEL)) if level is None else float(level)
    table = (conformal.get("quantiles") or {}).get(m)
    if table is None or f"{lv:g}" not in table:
        stored = {k: sorted(v) for k, v in (conformal.get("quantiles") or {}).items()}
        raise ValueError(f"The model folder stores conformal quantiles for {stored or 'nothing'}, not for method "
                         f"{m!r} at level {lv:g}; choose one of those.")
    q = table[f"{lv:g}"]
    return m, lv, float("inf") if q is None else float(q)


def set_names(sets: np.ndarray, class_names: Sequence[str]) -> list[list[str]]:
    """Class names of each set, in the model's class order."""
    return [[c for c, keep in zip(class_names, row) if keep] for row in np.asarray(sets, dtype=bool)]


def conformal_evaluation(labels: np.ndarray, prob: np.ndarray, conformal: dict[str, Any], class_names: Sequence[str],
                         level: float | None = None, method: str | None = None, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, Any]:
    """Coverage and set size of a model's prediction sets on labelled cases.

    Args:
        labels: True class indices, int ``(n,)``.
        prob: Temperature-scaled probabilities, float ``(n, K)``.
        conformal: The model folder's conformal record (:func:`fit_conformal`).
        class_names: The model's classes.
        level: Coverage level; default the record's.
        method: ``aps`` or ``lac``; default the record's.
        n_boot: Bootstrap resamples for the mean set size's interval.
        seed: Bootstrap seed.

    Returns:
        ``{"method", "level", "qhat", "n_calibration", "n", "conformal_coverage": {"value", "ci95"} (Wilson),
        "mean_set_size": {"value", "ci95"} (bootstrap percentile), "set_size_counts": {size: n},
        "per_class": {class: {"n", "conformal_coverage", "mean_set_size"}}}``.
    """
    m, lv, q = quantile_for(conformal, level, method)
    y = np.asarray(labels, dtype=np.int64)
    sets = prediction_sets(prob, q, m)
    covered = sets[np.arange(len(y)), y] if y.size else np.zeros(0, dtype=bool)
    sizes = sets.sum(axis=1)
    size_ci = mean_ci(sizes.astype(float), n_boot=n_boot, seed=seed) if len(sizes) else None
    per_class = {}
    for k, name in enumerate(class_names):
        of_class = y == k
        per_class[name] = {"n": int(of_class.sum()),
                           "conformal_coverage": float(covered[of_class].mean()) if of_class.any() else None,
                           "mean_set_size": float(sizes[of_class].mean()) if of_class.any() else None}
    return {
        "method": m, "level": lv, "qhat": None if math.isinf(q) else q,
        "n_calibration": conformal.get("n_calibration"), "n": int(len(y)),
        "conformal_coverage": {"value": float(covered.mean()) if len(y) else None,
                               "ci95": list(wilson_interval(int(covered.sum()), len(y))) if len(y) else None},
        "mean_set_size": {"value": size_ci["value"], "ci95": size_ci["ci95"]} if size_ci
                         else {"value": None, "ci95": None},
        "set_size_counts": {str(s): int((sizes == s).sum()) for s in range(1, sets.shape[1] + 1)},
        "per_class": per_class,
    }


def conformal_rows(ev: dict[str, Any]) -> list[list[str]]:
    """Report rows ``[cases, n, coverage, mean set size]``: overall (with 95% intervals), then per class."""
    from breastdx.evaluation.tables import ci_text

    def plain(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    rows = [["all", str(ev["n"]), ci_text(ev["conformal_coverage"]), ci_text(ev["mean_set_size"])]]
    rows += [[c, str(d["n"]), plain(d["conformal_coverage"]), plain(d["mean_set_size"])]
             for c, d in ev["per_class"].items()]
    return rows


def report_conformal(rep: Any, ev: dict[str, Any], split: str) -> None:
    """Add the prediction-set section to an :class:`~breastdx.evaluation.report.HtmlReport`."""
    qhat = "every class" if ev["qhat"] is None else f"{ev['qhat']:.4f}"
    rep.heading(f"Prediction sets on the {split} cases ({ev['method'].upper()}, level {ev['level']:g})")
    rep.paragraph(f"Split conformal prediction calibrated on {ev['n_calibration']} validation cases "
                  f"(quantile {qhat}): a set should hold the true class for at least {ev['level']:.0%} of cases like "
                  f"them. Coverage with a Wilson 95% interval, mean set size with a bootstrap 95% interval; set sizes "
                  f"{', '.join(f'{k}: {v}' for k, v in ev['set_size_counts'].items())}. Coverage is marginal: it is "
                  f"not promised per class, nor on images from another scanner or hospital.")
    rep.table(["cases", "n", "coverage", "mean set size"], conformal_rows(ev))
