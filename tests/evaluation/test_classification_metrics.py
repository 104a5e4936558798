"""Multiclass metrics and calibration: hand-computed golden values, bootstrap intervals, temperature scaling."""

import numpy as np
import pytest

from breastdx.evaluation.calibration import (calibration_summary, fit_temperature, multiclass_brier, nll, softmax,
                                             top_label_ece)
from breastdx.evaluation.classification import (HEADLINE_METRICS, choose_threshold, classification_metrics,
                                                confusion_matrix, evaluate_logits, fit_calibration, multiclass_metrics,
                                                operating_labels, youden_threshold)

NAMES = ("normal", "benign", "malignant")


def test_confusion_matrix_golden():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 2, 0, 2])
    np.testing.assert_array_equal(confusion_matrix(y, pred, 3), [[1, 1, 0], [0, 2, 1], [1, 0, 3]])


def test_multiclass_metrics_golden():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 2, 0, 2])
    prob = np.eye(3)[pred] * 0.6 + 0.4 / 3  # rows sum to 1, argmax = pred
    m = multiclass_metrics(y, prob, NAMES)
    assert m["accuracy"] == pytest.approx(6 / 9)
    # recalls 1/2, 2/3, 3/4
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert m["sensitivity_malignant"] == pytest.approx(3 / 4)
    # malignant: negatives are the 5 others, one predicted malignant (a benign) -> specificity 4/5
    assert m["specificity_malignant"] == pytest.approx(4 / 5)
    assert m["specificity_normal"] == pytest.approx(6 / 7)


def test_macro_auroc_golden():
    """One-vs-rest AUROCs by hand on four cases, then their mean."""
    y = np.array([0, 1, 2, 2])
    prob = np.array([[0.6, 0.3, 0.1],
                     [0.2, 0.5, 0.3],
                     [0.3, 0.2, 0.5],
                     [0.1, 0.6, 0.3]])
    m = multiclass_metrics(y, prob, NAMES)
    # normal: positive 0.6 beats all three negatives -> 1. benign: positive 0.5 vs 0.3, 0.2, 0.6 -> 2/3.
    # malignant: positives 0.5, 0.3 vs negatives 0.1, 0.3: (1 + 1) + (1 + 0.5) = 3.5 of 4 -> 0.875.
    assert m["auroc_normal"] == pytest.approx(1.0)
    assert m["auroc_benign"] == pytest.approx(2 / 3)
    assert m["auroc_malignant"] == pytest.approx(0.875)
    assert m["macro_auroc"] == pytest.approx((1 + 2 / 3 + 0.875) / 3)


def test_brier_and_ece_golden():
    y = np.array([0, 1])
    prob = np.array([[0.8, 0.2, 0.0], [0.5, 0.5, 0.0]])
    # (0.2^2 + 0.2^2) and (0.5^2 + 0.5^2) -> mean (0.08 + 0.5) / 2
    assert multiclass_brier(y, prob) == pytest.approx(0.29)
    # confidences 0.8 (correct) and 0.5 (argmax 0 -> wrong): bins differ; |1 - 0.8| / 2 + |0 - 0.5| / 2
    assert top_label_ece(y, prob) == pytest.approx(0.35)


def test_operating_labels_and_thresholds():
    prob = np.array([[0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    np.testing.assert_array_equal(operating_labels(prob, 2, 0.2), [2, 1, 2])
    np.testing.assert_array_equal(operating_labels(prob, 2, 0.9), [0, 1, 1])  # benign 0.2 > normal 0.1
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert youden_threshold(y, p) == pytest.approx(0.9)  # J = 0.5 at 0.9 and at 0.4; the highest wins
    assert choose_threshold(y, p, 1.0) == pytest.approx(0.4)
    assert choose_threshold(y, p, 0) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="both positive and negative"):
        youden_threshold(np.array([1, 1]), np.array([0.2, 0.3]))


def test_classification_metrics_with_intervals():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    z = rng.normal(size=(120, 3))
    z[np.arange(120), y] += 1.5
    prob = softmax(z)
    out = classification_metrics(y, prob, NAMES, threshold=0.3, n_boot=300, seed=0)
    assert list(out)[:len(HEADLINE_METRICS)] == list(HEADLINE_METRICS)
    for name in ("sensitivity_benign", "specificity_normal", "auroc_malignant", "brier_multiclass", "ece_top_label",
                 "accuracy_malignant_vs_rest"):
        assert name in out
    for name, m in out.items():
        lo, hi = m["ci95"]
        assert lo <= m["value"] + 1e-9 and m["value"] <= hi + 1e-9, name
    point = multiclass_metrics(y, prob, NAMES)
    assert out["accuracy"]["value"] == pytest.approx(point["accuracy"])
    assert out == classification_metrics(y, prob, NAMES, threshold=0.3, n_boot=300, seed=0)  # same seed, same values
    with pytest.raises(ValueError, match="prob must have shape"):
        classification_metrics(y, prob[:, :2], NAMES)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(20000, 3))
    true_t = 2.5
    p = softmax(z, true_t)
    y = (rng.random(20000)[:, None] > p.cumsum(axis=1)).sum(axis=1)  # labels drawn from softmax(z / 2.5)
    t = fit_temperature(y, z)
    assert t == pytest.approx(true_t, rel=0.05)
    assert nll(y, z, t) < nll(y, z, 1.0)
    summary = calibration_summary(y, z, t)
    assert summary["after"]["ece"] < summary["before"]["ece"]


def test_fit_calibration_and_evaluate_logits():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 200)
    z = rng.normal(size=(200, 3)) * 3
    z[np.arange(200), y] += 4  # over-confident
    cal = fit_calibration(y, z, NAMES, target_sensitivity=0.9)
    assert cal["temperature"] > 1
    ev = evaluate_logits(y, z, NAMES, temperature=cal["temperature"], threshold=cal["threshold"], n_boot=200)
    assert ev["metrics"]["accuracy"]["value"] == pytest.approx((z.argmax(1) == y).mean())  # argmax unchanged
    assert ev["calibration"]["after"]["nll"] < ev["calibration"]["before"]["nll"]
    assert np.asarray(ev["confusion_matrix"]).sum() == 200
    np.testing.assert_allclose(ev["prob"].sum(1), 1.0)


def test_bad_logits():
    with pytest.raises(ValueError, match="logits must have shape"):
        fit_temperature(np.array([0, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="labels must be integers"):
        fit_temperature(np.array([0, 3]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="temperature must be positive"):
        softmax(np.zeros((1, 2)), 0)


def test_a_share_of_none_or_all_gets_the_wilson_interval_not_a_point():
    """A BreakHis card read 'sensitivity_benign/fibroadenoma 0.000 (0.000 - 0.000)': with 0 of the class's cases
    found, every bootstrap resample gives 0. Such shares get the Wilson score interval over their own cases."""
    classes = ["normal", "benign", "malignant"]
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    prob = np.full((10, 3), 0.1)
    prob[np.arange(10), [0, 0, 0, 0, 0, 0, 2, 2, 2, 2]] = 0.8  # benign never found; every malignant found
    m = classification_metrics(y, prob, classes, "malignant", n_boot=200)
    assert m["sensitivity_benign"]["value"] == 0.0
    assert m["sensitivity_benign"]["ci95"] == pytest.approx([0.0, 0.56150], abs=1e-5)  # 0 of 3
    assert m["sensitivity"]["value"] == 1.0
    assert m["sensitivity"]["ci95"] == pytest.approx([0.51010, 1.0], abs=1e-5)  # 4 of 4 malignant
    assert m["specificity"]["ci95"] == pytest.approx([0.60967, 1.0], abs=1e-5)  # 6 of 6 others
    assert m["accuracy"]["ci95"][0] < m["accuracy"]["value"] < m["accuracy"]["ci95"][1]  # the bootstrap's, as before
