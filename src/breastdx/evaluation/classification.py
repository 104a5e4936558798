"""Metrics of K-class classifiers with bootstrap confidence intervals, and the malignant-vs-rest figures.

One bootstrap over cases gives every metric its interval (:func:`classification_metrics`); the resamples
are shared, so intervals of different metrics come from the same resampled test sets. Names in
``metrics.json`` (shared with the binary tasks; the positive class is malignant):

* ``accuracy``, ``balanced_accuracy`` (mean per-class recall): K-class, predicted class = argmax;
* ``macro_auroc``: mean over classes of the one-vs-rest AUROC; ``auroc_<class>``: each of them;
* ``sensitivity_<class>``, ``specificity_<class>``: one-vs-rest, from the argmax predictions;
* ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``f1``: malignant vs rest at the operating threshold
  on P(malignant) chosen on validation (:func:`choose_threshold`); ``accuracy_malignant_vs_rest`` and
  ``balanced_accuracy_malignant_vs_rest`` at the same threshold;
* ``auroc``, ``brier``, ``ece``: malignant vs rest from P(malignant) (binary Brier score and 15-bin ECE, as
  :func:`breastdx.evaluation.metrics.binary_metrics`);
* ``brier_multiclass``, ``ece_top_label``: over all K classes (:mod:`breastdx.evaluation.calibration`).

The positive class may be a group of subtypes (classes named ``"malignant/<subtype>"``,
:func:`positive_columns`): the binary figures then use P(malignant) = the sum over its subtypes, and
``subtype_accuracy``, ``subtype_balanced_accuracy`` repeat the K-class figures under those names. The
balanced accuracy averages the recall of the classes present in the evaluated cases only.

References:
    Fawcett, T. (2006). An introduction to ROC analysis. Pattern Recognition Letters 27:861-874.
    doi:10.1016/j.patrec.2005.10.010 (one-vs-rest, "class reference" ROC curves; their unweighted mean is
    ``macro_auroc``, as scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro")``; not the one-vs-one
    mean of Hand & Till 2001, doi:10.1023/A:1010920819831)
    Efron, B. & Tibshirani, R. (1993). An Introduction to the Bootstrap. Chapman & Hall.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from breastdx.evaluation.calibration import (calibration_summary, fit_temperature, multiclass_brier, softmax,
                                             top_label_ece)
from breastdx.evaluation.metrics import auroc, binary_metrics, bootstrap_ci, threshold_for_sensitivity

HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "auroc",
                    "brier", "ece", "macro_auroc")
"""Metric names shared with the other tasks, in report order."""


def _check(labels: np.ndarray, prob: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    p = np.asarray(prob, dtype=float)
    k = len(class_names)
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"prob must have shape (n, {k}) for classes {', '.join(class_names)}, got {p.shape}.")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},) to match prob, got {y.shape}.")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be class indices in [0, {k - 1}], got {sorted(set(y.tolist()))[:6]}.")
    return y.astype(np.int64), p


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class).

    Args:
        labels: True class indices ``(n,)``.
        pred: Predicted class indices ``(n,)``.
        n_classes: ``K``.

    Returns:
        ``int64`` ``(K, K)``: rows are true classes, columns predicted classes.
    """
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=int), np.asarray(pred, dtype=int)), 1)
    return cm


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    finite = np.isfinite(a)
    count = finite.sum(axis=axis)
    total = np.where(finite, a, 0.0).sum(axis=axis)
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def multiclass_metrics(labels: np.ndarray, prob: np.ndarray, class_names: Sequence[str],
                       pred: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """K-class metrics, vectorised over bootstrap resamples.

    Args:
        labels: Class indices ``(n,)`` or ``(B, n)``.
        prob: Probabilities ``(n, K)`` or ``(B, n, K)``.
        class_names: ``K`` names in index order (used as suffixes).
        pred: Predicted class indices, shape of ``labels``; default the argmax of ``prob``.

    Returns:
        Name to array ``()`` or ``(B,)``: ``accuracy``, ``balanced_accuracy``, ``macro_auroc``,
        ``brier_multiclass``, ``ece_top_label`` and per class ``sensitivity_<c>``, ``specificity_<c>``,
        ``auroc_<c>``. A per-class value is NaN when the resample lacks that class (or all other classes);
        balanced accuracy and macro AUROC average the finite ones.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(prob, dtype=float)
    d = p.argmax(axis=-1) if pred is None else np.asarray(pred, dtype=np.int64)
    single = y.ndim == 1
    y2, p3, d2 = (y[None], p[None], d[None]) if single else (y, p, d)
    out: dict[str, np.ndarray] = {"accuracy": (d2 == y2).mean(axis=1)}
    sens, aucs = [], []
    per_class: dict[str, np.ndarray] = {}
    for c, name in enumerate(class_names):
        pos, hit = y2 == c, d2 == c
        n_pos, n_neg = pos.sum(axis=1), (~pos).sum(axis=1)
        s = np.full(n_pos.shape, np.nan)
        np.divide((pos & hit).sum(axis=1), n_pos, out=s, where=n_pos > 0)
        sp = np.full(n_neg.shape, np.nan)
        np.divide((~pos & ~hit).sum(axis=1), n_neg, out=sp, where=n_neg > 0)
        a = np.atleast_1d(auroc(pos, p3[..., c]))
        sens.append(s)
        aucs.append(a)
        per_class[f"sensitivity_{name}"] = s
        per_class[f"specificity_{name}"] = sp
        per_class[f"auroc_{name}"] = a
    out["balanced_accuracy"] = _nanmean(np.stack(sens), axis=0)
    out["macro_auroc"] = _nanmean(np.stack(aucs), axis=0)
    out["brier_multiclass"] = np.atleast_1d(multiclass_brier(y2, p3))
    out["ece_top_label"] = np.atleast_1d(top_label_ece(y2, p3))
    out.update(per_class)
    return {name: (v[0] if single else v) for name, v in out.items()}


GROUP_SEPARATOR = "/"
"""Class names ``"<group>/<subtype>"`` form a group (BreakHis: ``"malignant/ductal_carcinoma"``): a positive class
that names the group covers every subtype, and P(group) is the sum of their probabilities."""


def positive_columns(class_names: Sequence[str], positive: str) -> tuple[int, ...]:
    """The class indices that make up the positive class: ``positive`` itself, or every class named
    ``"<positive>/<subtype>"`` (:data:`GROUP_SEPARATOR`).

    Raises:
        ValueError: If ``positive`` is neither a class nor a group of classes.
    """
    names = list(class_names)
    if positive in names:
        return (names.index(positive),)
    cols = tuple(i for i, c in enumerate(names) if c.startswith(positive + GROUP_SEPARATOR))
    if not cols:
        raise ValueError(f"positive class {positive!r} is not one of {', '.join(names)}, nor a group of them "
                         f"(classes named '{positive}{GROUP_SEPARATOR}<subtype>').")
    return cols


def positive_probability(prob: np.ndarray, columns: int | Sequence[int]) -> np.ndarray:
    """P(positive) ``(...)`` from probabilities ``(..., K)``: the sum over the positive class's ``columns``."""
    cols = [columns] if isinstance(columns, (int, np.integer)) else list(columns)
    return np.asarray(prob, dtype=float)[..., cols].sum(axis=-1)


def operating_labels(prob: np.ndarray, positive: int | Sequence[int], threshold: float) -> np.ndarray:
    """Class labels at an operating point on the positive class's probability.

    A case is positive when P(positive) ``>= threshold`` (the sum over the columns of a group of classes);
    it is then the most probable of the positive columns, and otherwise the most probable of the other
    classes. With two classes this is the usual threshold rule.

    Args:
        prob: ``(n, K)`` probabilities.
        positive: Index of the positive (malignant) class, or the indices of a group
            (:func:`positive_columns`).
        threshold: Threshold on its probability.

    Returns:
        ``int64`` ``(n,)`` class indices.
    """
    p = np.asarray(prob, dtype=float)
    cols = [positive] if isinstance(positive, (int, np.integer)) else list(positive)
    inside = np.zeros(p.shape[1], dtype=bool)
    inside[cols] = True
    best_in = np.where(inside, p, -np.inf).argmax(axis=1)
    best_out = np.where(~inside, p, -np.inf).argmax(axis=1)
    return np.where(p[:, cols].sum(axis=1) >= threshold, best_in, best_out).astype(np.int64)


def youden_threshold(y_true: np.ndarray, prob: np.ndarray) -> float:
    """The threshold that maximises Youden's J = sensitivity + specificity - 1 (ties: the highest threshold).

    Args:
        y_true: Labels in {0, 1} ``(n,)`` with both classes present.
        prob: Scores ``(n,)``; positive when ``prob >= threshold``.

    Raises:
        ValueError: If a class is missing.

    References:
        Youden, W. J. (1950). Index for rating diagnostic tests. Cancer 3(1):32-35.
        doi:10.1002/1097-0142(1950)3:1<32::AID-CNCR2820030106>3.0.CO;2-3
    """
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(prob, dtype=float)
    if y.all() or not y.any():
        raise ValueError("Youden's threshold needs both positive and negative cases.")
    best_t, best_j = 1.0, -np.inf
    for t in np.unique(p)[::-1]:
        pred = p >= t
        j = (pred & y).sum() / y.sum() + (~pred & ~y).sum() / (~y).sum() - 1.0
        if j > best_j + 1e-12:
            best_t, best_j = float(t), j
    return best_t


def choose_threshold(y_true: np.ndarray, prob: np.ndarray, target_sensitivity: float) -> float:
    """The operating threshold on P(malignant), chosen on validation cases.

    Args:
        y_true: Malignant (1) or not (0), ``(n,)``.
        prob: P(malignant) ``(n,)``.
        target_sensitivity: In (0, 1]: the highest threshold whose sensitivity reaches it
            (:func:`breastdx.evaluation.metrics.threshold_for_sensitivity`); 0: Youden's J
            (:func:`youden_threshold`).

    Raises:
        ValueError: If the target is outside [0, 1] or the validation cases lack a class.
    """
    if not 0.0 <= target_sensitivity <= 1.0:
        raise ValueError(f"target_sensitivity must be in [0, 1] (0 for Youden's J), got {target_sensitivity}.")
    if target_sensitivity == 0:
        return youden_threshold(y_true, prob)
    return threshold_for_sensitivity(y_true, prob, target_sensitivity)


def classification_metrics(labels: np.ndarray, prob: np.ndarray, class_names: Sequence[str],
                           positive: str = "malignant", threshold: float | None = None, *, n_boot: int = 2000,
                           seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every metric of the module docstring, each with a bias-corrected 95% bootstrap interval (a sensitivity,
    specificity, PPV, NPV or accuracy of 0 or 1 whose resamples are all alike: the Wilson score interval over its
    cases instead, :func:`_wilson_where_collapsed`).

    Args:
        labels: Class indices ``(n,)``.
        prob: Probabilities ``(n, K)``.
        class_names: ``K`` names in index order.
        positive: The positive class of the binary figures.
        threshold: Operating threshold on P(positive); None for the argmax rule.
        n_boot: Bootstrap resamples of the cases.
        seed: Seed of the resampling.

    Returns:
        ``{name: {"value": float, "ci95": [low, high]}}`` in the order of :data:`HEADLINE_METRICS`, then the
        per-class and the other metrics.

    Raises:
        ValueError: If shapes disagree, a label is out of range, or ``positive`` is not a class.
    """
    y, p = _check(labels, prob, class_names)
    pos = positive_columns(class_names, positive)
    op = p.argmax(axis=1) if threshold is None else operating_labels(p, pos, threshold)
    op_bin = np.isin(op, pos).astype(np.int64)
    grouped = any(GROUP_SEPARATOR in c for c in class_names)

    def metric_fn(yb: np.ndarray, idx: np.ndarray, dop: np.ndarray) -> dict[str, np.ndarray]:
        rows = np.asarray(idx).astype(np.int64)
        pb = p[rows]
        multi = multiclass_metrics(yb, pb, class_names)
        binary = binary_metrics(np.isin(yb, pos).astype(np.int64), positive_probability(pb, pos), pred=dop)
        out = {k: multi[k] for k in ("accuracy", "balanced_accuracy")}
        out.update({k: binary[k] for k in ("sensitivity", "specificity", "ppv", "npv", "f1", "auroc", "brier", "ece")})
        out["macro_auroc"] = multi["macro_auroc"]
        out.update({k: v for k, v in multi.items() if k not in out})
        out["accuracy_malignant_vs_rest" if positive == "malignant" else f"accuracy_{positive}_vs_rest"] = \
            binary["accuracy"]
        out["balanced_accuracy_malignant_vs_rest" if positive == "malignant" else
            f"balanced_accuracy_{positive}_vs_rest"] = binary["balanced_accuracy"]
        if grouped:  # the K classes are subtypes: the K-class figures under their own names too
            out["subtype_accuracy"] = multi["accuracy"]
            out["subtype_balanced_accuracy"] = multi["balanced_accuracy"]
        return out

    index = np.arange(y.size, dtype=float)
    out = bootstrap_ci(y, index, op_bin, metric_fn=metric_fn, n_boot=n_boot, seed=seed)
    return _wilson_where_collapsed(out, y, op_bin, np.isin(y, pos).astype(np.int64), class_names)


def _wilson_where_collapsed(out: dict[str, dict[str, Any]], y: np.ndarray, op_bin: np.ndarray, y_bin: np.ndarray,
                            class_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A share of 0 or 1 whose bootstrap interval collapsed to the point (every resample the same: 0 of 3
    fibroadenomas found read 0.000 [0.000, 0.000]) gets the Wilson score interval over its denominator
    (:func:`breastdx.evaluation.ci.wilson_interval`): sensitivity over the positives, specificity over the negatives,
    PPV and NPV over the cases called positive and negative, accuracy over all, per class over its cases."""
    from breastdx.evaluation.ci import wilson_interval

    denominators = {"sensitivity": int(y_bin.sum()), "specificity": int((1 - y_bin).sum()),
                    "ppv": int(op_bin.sum()), "npv": int((1 - op_bin).sum()), "accuracy": int(y.size)}
    denominators.update({k: int(y.size) for k in out if k.startswith("accuracy_") and k.endswith("_vs_rest")})
    for i, c in enumerate(class_names):
        denominators[f"sensitivity_{c}"] = int((y == i).sum())
        denominators[f"specificity_{c}"] = int((y != i).sum())
    for name, n in denominators.items():
        m = out.get(name)
        if m is None or n < 1 or m["value"] not in (0.0, 1.0) or m["ci95"][0] != m["ci95"][1]:
            continue
        m["ci95"] = list(wilson_interval(int(round(m["value"] * n)), n))
    return out


def evaluate_logits(labels: np.ndarray, logits: np.ndarray, class_names: Sequence[str], *,
                    temperature: float, threshold: float, positive: str = "malignant", n_boot: int = 2000,
                    seed: int = 0) -> dict[str, Any]:
    """Metrics of one split from logits, with the calibration before and after temperature scaling.

    Args:
        labels: Class indices ``(n,)``.
        logits: ``(n, K)``.
        class_names: ``K`` names.
        temperature: Temperature (fitted on validation) applied to the logits for the main metrics.
        threshold: Operating threshold on P(positive) after temperature scaling (chosen on validation).
        positive: The positive class.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``{"metrics": {...} (temperature-scaled), "calibration": {"temperature", "before", "after"} where
        before/after hold ``nll`` and ``brier``, ``ece``, ``brier_multiclass``, ``ece_top_label`` with
        intervals, "confusion_matrix": argmax (K, K) as lists, "confusion_matrix_operating_point": (K, K),
        "prob": (n, K) scaled probabilities, "prob_uncalibrated": (n, K), "pred": argmax (n,),
        "pred_operating_point": (n,)}``.
    """
    y = np.asarray(labels, dtype=np.int64)
    z = np.asarray(logits, dtype=float)
    prob = softmax(z, temperature)
    prob_raw = softmax(z, 1.0)
    metrics = classification_metrics(y, prob, class_names, positive, threshold, n_boot=n_boot, seed=seed)
    before = classification_metrics(y, prob_raw, class_names, positive, threshold, n_boot=n_boot, seed=seed)
    cal_keys = ("brier", "ece", "brier_multiclass", "ece_top_label")
    summary = calibration_summary(y, z, temperature) if y.size else {}
    pred_op = operating_labels(prob, positive_columns(class_names, positive), threshold)
    k = len(class_names)
    return {
        "metrics": metrics,
        "calibration": {
            "temperature": float(temperature),
            "before": {"nll": summary.get("before", {}).get("nll"), **{key: before[key] for key in cal_keys}},
            "after": {"nll": summary.get("after", {}).get("nll"), **{key: metrics[key] for key in cal_keys}},
        },
        "confusion_matrix": confusion_matrix(y, prob.argmax(axis=1), k).tolist(),
        "confusion_matrix_operating_point": confusion_matrix(y, pred_op, k).tolist(),
        "prob": prob,
        "prob_uncalibrated": prob_raw,
        "pred": prob.argmax(axis=1),
        "pred_operating_point": pred_op,
    }


def fit_calibration(val_labels: np.ndarray, val_logits: np.ndarray, class_names: Sequence[str],
                    positive: str = "malignant", target_sensitivity: float = 0.9) -> dict[str, float]:
    """Temperature and operating threshold, both fitted on validation cases.

    The temperature minimises the validation NLL (:func:`breastdx.evaluation.calibration.fit_temperature`);
    the threshold is then chosen on the temperature-scaled P(positive) by :func:`choose_threshold`.

    Returns:
        ``{"temperature": T, "threshold": t, "target_sensitivity": ...}``.

    Raises:
        ValueError: If the validation cases lack the positive class or all of the others.
    """
    y = np.asarray(val_labels, dtype=np.int64)
    z = np.asarray(val_logits, dtype=float)
    temperature = fit_temperature(y, z)
    pos = positive_columns(class_names, positive)
    threshold = choose_threshold(np.isin(y, pos).astype(int), positive_probability(softmax(z, temperature), pos),
                                 target_sensitivity)
    return {"temperature": temperature, "threshold": float(threshold), "target_sensitivity": float(target_sensitivity)}


def plot_training_curves(logs: dict[str, dict[str, list[float]]], path: Any, title: str = "Training") -> Any:
    """Training loss and validation score per epoch, one line per architecture.

    Args:
        logs: Architecture name to :func:`breastdx.training.trainer.read_training_log` output.
        path: PNG file to write.
        title: Figure title.
    """
    import matplotlib.pyplot as plt

    from breastdx.evaluation.plots import plot_finite, save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, log in logs.items():
        for key, ax in (("train_loss", ax1), ("val_score", ax2)):
            if key in log:
                plot_finite(ax, log.get("epoch", []), log[key], label=name, lw=1.2)
    ax1.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax2.set(xlabel="epoch", ylabel="(macro AUROC + balanced accuracy) / 2", title="Validation score", ylim=(0, 1))
    for ax in (ax1, ax2):
        if ax.lines:
            ax.legend(fontsize=8)
    return save_figure(fig, path, title)


def write_figures(run_dir: Any, labels: np.ndarray, evaluations: dict[str, dict[str, Any]], best: str,
                  class_names: Sequence[str], positive: str = "malignant", split: str = "test") -> list[tuple[Any, str]]:
    """The report's figures for one split: ROC (positive vs rest, every model; one-vs-rest, best model),
    confusion matrices and reliability diagrams before and after temperature scaling (best model).

    Args:
        run_dir: Folder to write the PNG files into.
        labels: True class indices ``(n,)``.
        evaluations: Model name to :func:`evaluate_logits` output.
        best: The model shown in the single-model figures.
        class_names: Class names in index order.
        positive: The positive class.
        split: Name of the split, for titles.

    Returns:
        ``(png path, caption)`` pairs, in report order.
    """
    from pathlib import Path

    from breastdx.evaluation.plots import plot_confusion, plot_reliability, plot_roc_curves

    run_dir = Path(run_dir)
    y = np.asarray(labels, dtype=np.int64)
    pos = positive_columns(class_names, positive)
    yb = np.isin(y, pos).astype(int)
    out: list[tuple[Any, str]] = []
    if 0 < yb.sum() < yb.size:
        curves = {f"{name} (AUROC {ev['metrics']['auroc']['value']:.3f})": (yb, positive_probability(ev["prob"], pos))
                  for name, ev in evaluations.items()}
        out.append((plot_roc_curves(curves, run_dir / "roc.png", f"{positive} vs rest, {split}"),
                    f"ROC of {positive} vs rest on the {split} split, every model"))
    ev = evaluations[best]
    if len(class_names) > 2:
        ovr = {f"{c} (AUROC {ev['metrics'][f'auroc_{c}']['value']:.3f})": ((y == k).astype(int), ev["prob"][:, k])
               for k, c in enumerate(class_names) if 0 < (y == k).sum() < y.size}
        if ovr:
            out.append((plot_roc_curves(ovr, run_dir / "roc_one_vs_rest.png", f"{best}: one vs rest, {split}"),
                        f"One-vs-rest ROC per class of {best} (macro AUROC "
                        f"{ev['metrics']['macro_auroc']['value']:.3f})"))
    out.append((plot_confusion(np.asarray(ev["confusion_matrix"]), class_names, run_dir / "confusion.png",
                               f"{best}, most probable class"), f"Confusion matrix of {best} ({split}), argmax"))
    out.append((plot_confusion(np.asarray(ev["confusion_matrix_operating_point"]), class_names,
                               run_dir / "confusion_operating_point.png", f"{best}, operating point"),
                f"Confusion matrix of {best} ({split}) at the operating point chosen on validation"))
    t = ev["calibration"]["temperature"]
    raw, cal = ev["prob_uncalibrated"], ev["prob"]
    out.append((plot_reliability({"before (T = 1)": (yb, positive_probability(raw, pos)),
                                  f"after (T = {t:.2f})": (yb, positive_probability(cal, pos))},
                                 run_dir / "reliability.png", title=f"{best}: P({positive}), {split}"),
                f"Reliability of P({positive}) before and after temperature scaling fitted on validation"))
    top = {"before (T = 1)": ((raw.argmax(1) == y).astype(int), raw.max(1)),
           f"after (T = {t:.2f})": ((cal.argmax(1) == y).astype(int), cal.max(1))}
    out.append((plot_reliability(top, run_dir / "reliability_top_label.png",
                                 title=f"{best}: top-label confidence, {split}"),
                "Reliability of the top-label confidence (observed accuracy against confidence) before and after "
                "temperature scaling"))
    return out
