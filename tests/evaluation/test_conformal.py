"""Conformal prediction sets: golden scores and quantiles, sets never empty, deterministic tie-break, and the
coverage guarantee on exchangeable synthetic cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from breastdx.evaluation.conformal import (conformal_evaluation, conformal_quantile, conformity_scores,
                                           fit_conformal, prediction_sets, quantile_for, tiebreak)

PROB = np.array([[0.7, 0.2, 0.1],
                 [0.1, 0.3, 0.6],
                 [0.5, 0.4, 0.1]])


def test_scores_golden_values():
    y = np.array([0, 0, 1])
    assert np.allclose(conformity_scores(PROB, y, "lac"), [0.3, 0.9, 0.6])
    u = tiebreak(PROB)
    # APS: mass of the classes ranked above the true one + u x p(true)
    assert np.allclose(conformity_scores(PROB, y, "aps"), [u[0] * 0.7, 0.9 + u[1] * 0.1, 0.5 + u[2] * 0.4])
    with pytest.raises(ValueError, match="labels must lie in"):
        conformity_scores(PROB, np.array([0, 3, 1]))
    with pytest.raises(ValueError, match="Unknown conformal method"):
        conformity_scores(PROB, y, "raps")


def test_tiebreak_is_deterministic_uniform_and_depends_on_the_probabilities():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=4000)
    u = tiebreak(p)
    assert np.array_equal(u, tiebreak(p.copy())) and ((u >= 0) & (u < 1)).all()
    assert abs(u.mean() - 0.5) < 0.02 and abs((u < 0.1).mean() - 0.1) < 0.02
    assert tiebreak(PROB[:1])[0] != tiebreak(PROB[1:2])[0]


def test_finite_sample_quantile():
    s = np.arange(1, 20) / 20  # 19 scores 0.05 ... 0.95
    assert conformal_quantile(s, 0.9) == pytest.approx(0.9)  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(s, 0.8) == pytest.approx(0.8)  # 16th
    assert math.isinf(conformal_quantile(s[:5], 0.9))  # ceil(6 * 0.9) = 6 > 5: every class
    with pytest.raises(ValueError, match="level must be in"):
        conformal_quantile(s, 1.0)


def test_sets_never_empty_and_grow_with_qhat():
    for method in ("aps", "lac"):
        small = prediction_sets(PROB, 0.0, method)
        assert small.sum(axis=1).tolist() == [1, 1, 1] and small[np.arange(3), PROB.argmax(axis=1)].all()
        full = prediction_sets(PROB, 1.0, method)
        assert full.all()
        mid = prediction_sets(PROB, 0.75, method)
        assert (mid >= small).all() and (mid <= full).all()
    assert prediction_sets(PROB, 0.75, "lac").tolist() == [[True, False, False], [False, True, True],
                                                           [True, True, False]]


@pytest.mark.parametrize("method", ["aps", "lac"])
def test_coverage_holds_on_exchangeable_cases(method):
    """Calibrate on 300 cases, test on 3000 more from the same (miscalibrated, hard) model: coverage is at least the
    level, up to sampling noise, averaged over 20 calibration draws."""
    rng = np.random.default_rng(1)
    coverages, sizes = [], []
    for _ in range(20):
        logits = rng.normal(size=(3300, 3)) * 2.0
        prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        true_prob = np.exp(logits * 0.6) / np.exp(logits * 0.6).sum(axis=1, keepdims=True)  # overconfident model
        y = np.array([rng.choice(3, p=p) for p in true_prob])
        record = fit_conformal(y[:300], prob[:300])
        ev = conformal_evaluation(y[300:], prob[300:], record, ["a", "b", "c"], method=method, n_boot=50)
        coverages.append(ev["conformal_coverage"]["value"])
        sizes.append(ev["mean_set_size"]["value"])
    assert np.mean(coverages) >= 0.89 and min(coverages) > 0.85, coverages
    assert 1.0 < np.mean(sizes) < 3.0


def test_record_and_evaluation_fields():
    y = np.array([0, 2, 1] * 10)
    prob = np.tile(PROB, (10, 1))
    record = fit_conformal(y, prob, split="validation (test)")
    assert record["method"] == "aps" and record["level"] == 0.9 and record["n_calibration"] == 30
    assert set(record["quantiles"]) == {"aps", "lac"} and set(record["quantiles"]["aps"]) == {"0.8", "0.85", "0.9",
                                                                                                "0.95", "0.99"}
    assert record["quantiles"]["lac"]["0.99"] is None  # ceil(31 x 0.99) = 31 > 30: every class
    assert quantile_for(record) == ("aps", 0.9, record["qhat"])
    assert quantile_for(record, 0.99, "lac")[2] == math.inf
    with pytest.raises(ValueError, match="not for method 'aps' at level 0.7"):
        quantile_for(record, 0.7)
    ev = conformal_evaluation(y, prob, record, ["a", "b", "c"], level=0.8, method="lac", n_boot=100)
    assert ev["method"] == "lac" and ev["level"] == 0.8 and ev["n"] == 30
    assert sum(ev["set_size_counts"].values()) == 30 and set(ev["per_class"]) == {"a", "b", "c"}
    assert ev["per_class"]["a"]["n"] == 10 and ev["conformal_coverage"]["ci95"][0] <= ev["conformal_coverage"]["value"]


def test_coverage_interval_is_the_wilson_interval_of_ci():
    """The coverage interval is breastdx.evaluation.ci.wilson_interval: 27 of 30 covered gives the Wilson 95% interval
    [0.743789, 0.965400] (by hand: centre (0.9 + z^2/60) / (1 + z^2/30), z = 1.959964); all covered reaches 1.0
    exactly; no case gives no interval."""
    record = {"method": "lac", "level": 0.9, "quantiles": {"lac": {"0.9": 0.35}}, "n_calibration": 30}
    prob = np.tile([[0.7, 0.2, 0.1]], (30, 1))  # set {class 0} for every case
    y = np.array([0] * 27 + [1] * 3)
    ev = conformal_evaluation(y, prob, record, ["a", "b", "c"], n_boot=10)
    assert ev["conformal_coverage"]["value"] == pytest.approx(0.9)
    assert ev["conformal_coverage"]["ci95"] == pytest.approx([0.7437892, 0.9654001], abs=1e-7)
    all_covered = conformal_evaluation(np.zeros(10, int), prob[:10], record, ["a", "b", "c"], n_boot=10)
    assert all_covered["conformal_coverage"]["ci95"][1] == 1.0
    assert all_covered["conformal_coverage"]["ci95"][0] == pytest.approx(0.7224672, abs=1e-7)
    none = conformal_evaluation(np.zeros(0, int), prob[:0], record, ["a", "b", "c"], n_boot=10)
    assert none["conformal_coverage"] == {"value": None, "ci95": None}


def test_scores_of_non_finite_probabilities_are_refused():
    """A NaN probability gave a NaN score, which sorts last and could be stored as the quantile."""
    prob = np.array([[0.2, 0.8], [np.nan, 0.5], [0.6, 0.4]])
    with pytest.raises(ValueError, match=r"NaN or infinite values \(rows \[1\]"):
        conformity_scores(prob, np.array([1, 0, 0]))
