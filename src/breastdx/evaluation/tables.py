"""Tables of classification results, as the command line, the reports and the model cards print them.

Every threshold-dependent figure names its operating point: "@ argmax" (the most probable class, as
MedMNIST and most papers report accuracy) or "@ op" (the operating threshold on P(positive) fitted on
the validation split, :func:`breastdx.evaluation.classification.fit_calibration`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

OPERATING_POINTS = {
    "accuracy": "argmax", "balanced_accuracy": "argmax", "macro_auroc": None, "auroc": None,
    "sensitivity": "op", "specificity": "op", "ppv": "op", "npv": "op", "f1": "op", "brier": None, "ece": None,
}
"""The operating point of each summary metric: ``"argmax"``, ``"op"`` (tuned threshold) or None (none: a
ranking or probability figure). Per-class figures (``sensitivity_<class>``) are at argmax."""

OPERATING_POINT_TEXT = ("@ argmax: the most probable class; @ op: the operating threshold on P({positive}) chosen "
                        "on the validation split; AUROC, Brier and ECE use the probabilities.")


def metric_label(name: str) -> str:
    """A metric's name with its operating point: ``"accuracy @ argmax"``, ``"sensitivity @ op"``, ``"auroc"``."""
    point = OPERATING_POINTS.get(name, "argmax" if name.startswith(("sensitivity_", "specificity_")) else None)
    return f"{name} @ {point}" if point else name


HEADLINE_METRICS = ("macro_auroc", "auroc", "accuracy", "sensitivity", "specificity", "dice", "aji", "pq", "iou",
                    "hd95", "normal_fp_share")
"""The figures ``breastdx models`` shows of a model, in this order, the first four its ``metrics`` hold."""


def headline_metrics(meta: Mapping[str, Any], n: int = 4) -> list[str]:
    """The names of a model's headline figures: the first ``n`` of :data:`HEADLINE_METRICS` in its ``metrics``
    with a value; ``macro_auroc`` only for more than two classes (for two it equals ``auroc``).

    Args:
        meta: A model folder's ``meta.json`` (its ``metrics`` and ``class_names``).
        n: At most this many.

    Returns:
        Metric names, possibly none (a generator has no test metrics).
    """
    metrics = meta.get("metrics") or {}
    two = len(meta.get("class_names") or ()) <= 2
    names = [k for k in HEADLINE_METRICS if (metrics.get(k) or {}).get("value") is not None
             and not (k == "macro_auroc" and two)]
    return names[:n]


def ci_text(m: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``value [low, high]`` of a metric with a 95% interval, ``value`` alone when it has none (two MoNuSeg test
    tiles, or bounds that could not be computed: NaN, null in a JSON file), or ``n/a`` when it is missing or NaN
    (null)."""
    if not m or m.get("value") is None or m["value"] != m["value"]:
        return "n/a"
    lo, hi = m.get("ci95") or (None, None)
    if lo is None or hi is None or lo != lo or hi != hi:
        return f"{m['value']:.{digits}f}"
    return f"{m['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summary_rows(metrics: Mapping[str, Any], names: Sequence[str]) -> list[list[str]]:
    """Rows ``[metric @ operating point, value [95% CI]]`` of the named metrics."""
    return [[metric_label(k), ci_text(metrics.get(k))] for k in names]


def calibration_rows(calibration: Mapping[str, Any]) -> list[list[Any]]:
    """Rows ``[metric, before, after]`` of a calibration summary (temperature scaling)."""
    rows = [["temperature", "1", f"{calibration['temperature']:.3f}"]]
    for k in ("nll", "brier", "ece", "brier_multiclass", "ece_top_label"):
        b, a = calibration["before"][k], calibration["after"][k]
        if isinstance(b, dict):
            rows.append([k, ci_text(b), ci_text(a)])
        else:
            rows.append([k, "n/a" if b is None else f"{b:.4f}", "n/a" if a is None else f"{a:.4f}"])
    return rows


def comparison_rows(runs: Mapping[str, Any], best: str) -> tuple[list[str], list[list[Any]]]:
    """Header and rows comparing trained architectures on the test split.

    Args:
        runs: Architecture name to :class:`breastdx.training.classification.ArchitectureRun`.
        best: The architecture chosen on validation (marked "(best)").
    """
    header = ["model", "val score", "accuracy @ argmax", "balanced acc. @ argmax", "macro AUROC", "AUROC (positive)",
              "sensitivity @ op", "specificity @ op", "ECE before → after T", "parameters", "training (min)",
              "best epoch"]
    rows = []
    for name, r in runs.items():
        m = r.test["metrics"]
        cal = r.test["calibration"]
        rows.append([name + (" (best)" if name == best else ""), f"{r.val_score:.3f}", ci_text(m["accuracy"]),
                     ci_text(m["balanced_accuracy"]), ci_text(m["macro_auroc"]), ci_text(m["auroc"]),
                     ci_text(m["sensitivity"]), ci_text(m["specificity"]),
                     f"{cal['before']['ece']['value']:.3f} → {cal['after']['ece']['value']:.3f}",
                     f"{r.n_parameters:,}", f"{r.fit.train_seconds / 60:.1f}", str(r.fit.best_epoch)])
    return header, rows


def plain_evaluation(ev: Mapping[str, Any]) -> dict[str, Any]:
    """An :func:`~breastdx.evaluation.classification.evaluate_logits` result without its arrays (for JSON)."""
    return {k: v for k, v in ev.items() if k not in ("prob", "prob_uncalibrated", "pred", "pred_operating_point")}


def threshold_rule(target_sensitivity: float, positive: str) -> str:
    """How the operating threshold was chosen, in words (for ``meta.json``, metrics and cards)."""
    if target_sensitivity == 0:
        return f"Youden's J on the validation split (temperature-scaled P({positive}))"
    return (f"highest threshold with sensitivity >= {target_sensitivity} on the validation split (temperature-scaled "
            f"P({positive}))")


def label_rule(class_names: Sequence[str], positive: str) -> str:
    """How a label is chosen from the probabilities, in words."""
    from breastdx.evaluation.classification import positive_columns

    cols = positive_columns(class_names, positive)
    others = [c for k, c in enumerate(class_names) if k not in cols]
    rest = others[0] if len(others) == 1 else f"the more probable of {' and '.join(others)}"
    if len(cols) == 1:
        return f"{positive} when P({positive}) >= threshold, else {rest}"
    return (f"the most probable {positive} subtype when P({positive}) (the sum over its {len(cols)} subtypes) >= "
            f"threshold, else {rest}")
