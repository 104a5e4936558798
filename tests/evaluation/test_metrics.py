"""Golden values computed by hand on small inputs."""

import numpy as np
import pytest

from breastdx.evaluation.metrics import (auroc, binary_metrics, bootstrap_ci, expected_calibration_error,
                                         threshold_for_sensitivity)

# 4 malignant, 4 benign.
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.6, 0.1, 0.2])


def test_confusion_metrics_golden():
    # threshold 0.5: predicted positive = 0.9, 0.8, 0.7 (TP=3), 0.6 (FP=1); FN=1 (0.4); TN=3
    m = binary_metrics(Y, P)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["ppv"] == pytest.approx(3 / 4)
    assert m["npv"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["balanced_accuracy"] == pytest.approx(0.75)


def test_auroc_golden():
    # pairs (pos, neg) = 16; pos 0.4 beats 0.3, 0.1, 0.2 but loses to 0.6 -> 1 miss; every other pos beats all negs
    assert auroc(Y, P) == pytest.approx(15 / 16)
    assert auroc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # tie counts one half
    assert np.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_brier_and_ece_golden():
    m = binary_metrics(Y, P)
    sq = [(0.1) ** 2, 0.2 ** 2, 0.6 ** 2, 0.3 ** 2, 0.3 ** 2, 0.6 ** 2, 0.1 ** 2, 0.2 ** 2]
    assert m["brier"] == pytest.approx(np.mean(sq))
    # 2 bins: [0, .5) holds p = .4 .3 .1 .2 with y = 1 0 0 0 -> |0.25 - 0.25| = 0
    #         [.5, 1] holds p = .9 .8 .7 .6 with y = 1 1 1 0 -> |0.75 - 0.75| = 0
    assert expected_calibration_error(Y, P, n_bins=2) == pytest.approx(0.0)
    # 1 bin: |mean y - mean p| = |0.5 - 0.5| = 0; skewed probabilities: |0.5 - 0.9| = 0.4
    assert expected_calibration_error(Y, np.full(8, 0.9), n_bins=1) == pytest.approx(0.4)


def test_undefined_metrics_are_nan():
    m = binary_metrics(np.array([0, 0]), np.array([0.1, 0.2]))
    assert np.isnan(m["ppv"]) and np.isnan(m["sensitivity"]) and m["specificity"] == 1.0


def test_batched_equals_loop():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(5, 40))
    p = rng.random((5, 40))
    batched = binary_metrics(y, p)
    for b in range(5):
        single = binary_metrics(y[b], p[b])
        for k in single:
            assert batched[k][b] == pytest.approx(single[k], nan_ok=True)


def test_bootstrap_ci_contains_value_and_is_seeded():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.random(200) * 0.5, 0, 1)
    a = bootstrap_ci(y, p, n_boot=300, seed=3)
    b = bootstrap_ci(y, p, n_boot=300, seed=3)
    assert a == b
    for k, m in a.items():
        lo, hi = m["ci95"]
        assert lo <= m["value"] <= hi, k
    assert a["auroc"]["value"] == pytest.approx(float(auroc(y, p)))


def test_bootstrap_ci_repeats_average():
    y = Y
    prob = np.stack([P, np.where(Y == 1, 0.9, 0.1)])  # second repeat is perfect
    out = bootstrap_ci(y, prob, n_boot=100)
    assert out["accuracy"]["value"] == pytest.approx((0.75 + 1.0) / 2)


def test_threshold_for_sensitivity_golden():
    # positives sorted: .9 .8 .7 .4 -> sensitivity 0.75 needs 3 of 4 -> threshold .7; 1.0 needs .4
    assert threshold_for_sensitivity(Y, P, 0.75) == pytest.approx(0.7)
    assert threshold_for_sensitivity(Y, P, 1.0) == pytest.approx(0.4)
    assert threshold_for_sensitivity(Y, P, 0.98) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="without malignant"):
        threshold_for_sensitivity(np.zeros(3), np.ones(3), 0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        threshold_for_sensitivity(Y, P, 0.0)


def test_bias_corrected_interval_covers_biased_statistic():
    from breastdx.evaluation.metrics import bias_corrected_interval

    # every resample lies above the estimate (as for the ECE): a plain percentile interval would miss it
    boot = np.linspace(0.03, 0.05, 1001)  # median 0.04, 2.5 / 97.5 percentiles 0.0305 / 0.0495
    low, high = bias_corrected_interval(boot, 0.031)
    assert low == pytest.approx(0.0305 - 0.009) and high == pytest.approx(0.0495 - 0.009)
    # no bias: the plain 2.5 / 97.5 percentiles
    sym = np.linspace(0, 1, 2001)
    low, high = bias_corrected_interval(sym, 0.5)
    assert low == pytest.approx(0.025, abs=1e-3) and high == pytest.approx(0.975, abs=1e-3)


def test_bootstrap_by_multiplicities_equals_bootstrap_by_copies():
    """binary_metrics_weighted on resample counts gives binary_metrics of the expanded resamples (with ties)."""
    from breastdx.evaluation.metrics import binary_metrics, binary_metrics_weighted, bootstrap_ci

    rng = np.random.default_rng(0)
    n = 61
    y = (rng.random(n) < 0.4).astype(int)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 1)  # many ties
    idx = rng.integers(0, n, (50, n))
    counts = np.zeros((50, n))
    np.add.at(counts, (np.arange(50)[:, None], idx), 1)
    fast = binary_metrics_weighted(counts, y, p)
    slow = binary_metrics(y[idx], p[idx])
    for k in slow:
        np.testing.assert_allclose(fast[k], slow[k], atol=1e-12, err_msg=k)
    prob = np.vstack([p, np.clip(p + 0.05 * rng.standard_normal(n), 0, 1)])
    a = bootstrap_ci(y, prob, n_boot=300, seed=4)
    b = bootstrap_ci(y, prob, n_boot=300, seed=4, metric_fn=lambda yy, pp, dd: binary_metrics(yy, pp, pred=dd))
    for k in a:
        assert a[k]["value"] == pytest.approx(b[k]["value"], abs=1e-12)
        np.testing.assert_allclose(a[k]["ci95"], b[k]["ci95"], atol=1e-9, err_msg=k)


def test_bootstrap_ci_says_how_many_resamples_it_left_out(caplog):
    """A resample without a malignant case has no sensitivity (nor AUROC, nor PPV here): it is left out of those
    intervals, which was silent; the count is now logged per metric. 2 malignant of 10 cases: the count is that of
    the resamples (same seed, same draws) holding neither of the two."""
    import logging

    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.where(y == 1, 0.9, 0.1)  # predicted malignant exactly when malignant: PPV undefined with no positive
    idx = np.random.default_rng(5).integers(0, y.size, size=(200, y.size))
    no_positive = int(np.count_nonzero(y[idx].sum(axis=1) == 0))
    one_class = int(np.count_nonzero(y[idx].sum(axis=1) % y.size == 0))
    assert 0 < no_positive <= one_class < 200
    with caplog.at_level(logging.INFO, logger="breastdx.evaluation.metrics"):
        bootstrap_ci(y, p, n_boot=200, seed=5)
    assert f"sensitivity {no_positive}," in caplog.text and f"ppv {no_positive}," in caplog.text
    assert f"auroc {one_class}" in caplog.text and "of 200 resamples" in caplog.text
    assert "specificity" not in caplog.text and "brier" not in caplog.text  # defined on every resample


def test_ece_bins_are_closed_on_the_left_as_documented():
    """p = 0.2 lies on the edge of the bins [0, 0.2) and [0.2, 0.4) (5 bins): closed on the left it is alone in the
    second bin, |0 - 0.2| + |1 - 0.1| over 2 cases; Guo et al.'s right-closed bins would put both cases in the first
    one, |1 - 0.3| / 2 = 0.35. The README's WDBC figures rest on the left-closed bins."""
    y, p = np.array([0, 1]), np.array([0.2, 0.1])
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx(0.55)
    from breastdx.evaluation.metrics import binary_metrics_weighted

    assert binary_metrics_weighted(np.ones((1, 2)), y, p, n_bins=5)["ece"][0] == pytest.approx(0.55)
