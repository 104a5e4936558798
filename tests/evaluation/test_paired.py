"""Paired comparison of two AUROCs on the same cases: golden values, the bootstrap test and DeLong's test."""

import json

import numpy as np
import pytest

from breastdx.evaluation.paired import delong_test, paired_auroc_test, plot_auroc_difference


def _scores(n=600, seed=0, gap=1.2):
    """Labels, a good score and a weaker one sharing most of their noise (correlated, as two models are)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    shared = rng.normal(size=n)
    good = gap * y + shared + 0.3 * rng.normal(size=n)
    weak = 0.4 * y + shared + 0.3 * rng.normal(size=n)
    return y, good, weak


def test_identical_models_differ_by_zero_with_p_one():
    y, good, _ = _scores()
    r = paired_auroc_test(y, good, good.copy(), n_boot=300, seed=0)
    assert r["difference"] == 0.0
    assert r["ci95"] == [0.0, 0.0]
    assert r["p_value"] == 1.0
    assert r["delong"]["difference"] == 0.0 and r["delong"]["p_value"] == 1.0
    assert r["auroc_a"] == r["auroc_b"]


def test_a_clearly_better_model_gets_a_small_p_value_and_an_interval_without_zero():
    y, good, weak = _scores()
    r = paired_auroc_test(y, good, weak, n_boot=500, seed=0, names=("good", "weak"))
    assert r["model_a"] == "good" and r["model_b"] == "weak"
    assert r["difference"] > 0.1
    assert 0.0 < r["ci95"][0] <= r["difference"] <= r["ci95"][1]
    assert r["p_value"] == pytest.approx(2 / 501)  # no resample <= 0: the smallest p the test can give
    assert r["delong"]["p_value"] < 1e-6
    assert r["delong"]["ci95"][0] == pytest.approx(r["ci95"][0], abs=0.02)  # the two methods agree
    json.dumps(r)  # plain numbers only


def test_swapping_the_models_negates_the_difference():
    y, good, weak = _scores(seed=3, gap=0.6)
    ab = paired_auroc_test(y, good, weak, n_boot=200, seed=1)
    ba = paired_auroc_test(y, weak, good, n_boot=200, seed=1)
    assert ba["difference"] == pytest.approx(-ab["difference"])
    assert ba["ci95"] == pytest.approx([-ab["ci95"][1], -ab["ci95"][0]])
    assert ba["p_value"] == pytest.approx(ab["p_value"])
    assert ba["delong"]["z"] == pytest.approx(-ab["delong"]["z"])


def test_same_seed_same_result_and_strata_kept():
    y, good, weak = _scores(n=101, seed=5, gap=0.5)  # odd size, unequal classes
    r1 = paired_auroc_test(y, good, weak, n_boot=100, seed=7, return_resamples=True)
    r2 = paired_auroc_test(y, good, weak, n_boot=100, seed=7, return_resamples=True)
    np.testing.assert_array_equal(r1["resamples"], r2["resamples"])
    assert r1["n"] == 101 and r1["n_positive"] == 50
    assert np.isfinite(r1["resamples"]).all()  # stratified: every resample has both classes


def test_delong_golden_values_on_four_cases():
    # Positives 0.35, 0.8; negatives 0.1, 0.4. Model A: placements V10 = (1/2, 1), V01 = (1, 1/2), AUROC 0.75.
    # Model B ranks perfectly (AUROC 1). Differences of placements: (-1/2, 0) and (0, -1/2), each with sample
    # variance 1/8, so var = (1/8)/2 + (1/8)/2 = 1/8.
    r = delong_test([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.1, 0.2, 0.3, 0.4])
    assert r["auroc_a"] == pytest.approx(0.75) and r["auroc_b"] == pytest.approx(1.0)
    assert r["difference"] == pytest.approx(-0.25)
    assert r["se"] == pytest.approx(np.sqrt(1 / 8))
    assert r["z"] == pytest.approx(-0.25 / np.sqrt(1 / 8))
    assert r["p_value"] == pytest.approx(0.4795001, abs=1e-6)


def test_ties_count_one_half():
    r = delong_test([0, 1], [0.5, 0.5], [0.2, 0.9])
    assert r["auroc_a"] == 0.5 and r["auroc_b"] == 1.0


@pytest.mark.parametrize("y,a,b,match", [
    ([1, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], "positive and negative"),
    ([0, 1, 2], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], "labels 0 and 1"),
    ([0, 1], [0.1, 0.2, 0.3], [0.1, 0.2], "equal length"),
    ([0, 1], [0.1, np.nan], [0.1, 0.2], "finite"),
])
def test_bad_input_is_refused_with_a_message(y, a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_auroc_test(y, a, b, n_boot=10)


def test_n_boot_must_be_positive():
    with pytest.raises(ValueError, match="n_boot"):
        paired_auroc_test([0, 1], [0.1, 0.2], [0.2, 0.1], n_boot=0)


def test_plot_writes_a_png_and_needs_the_resamples(tmp_path):
    y, good, weak = _scores(n=80)
    r = paired_auroc_test(y, good, weak, n_boot=50, return_resamples=True, names=("cnn", "resnet18"))
    png = plot_auroc_difference(r, tmp_path / "diff.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="return_resamples"):
        plot_auroc_difference({k: v for k, v in r.items() if k != "resamples"}, tmp_path / "x.png")


def test_resampling_patients_widens_the_interval_when_patches_of_a_patient_agree():
    """Patches of one patient share their errors: the cluster bootstrap over patients gives the wider, honest
    interval; with one patch per patient it is the ordinary bootstrap of cases, up to the stratification."""
    rng = np.random.default_rng(0)
    n_patients, per = 30, 20
    groups = np.repeat(np.arange(n_patients), per)
    y = (rng.random(groups.size) < 0.4).astype(int)
    patient_effect = rng.normal(size=n_patients)[groups]  # model A errs per patient, B per patch
    a = 1.0 * y + patient_effect
    b = 1.0 * y + rng.normal(size=groups.size)
    by_case = paired_auroc_test(y, a, b, n_boot=400, seed=0)
    by_patient = paired_auroc_test(y, a, b, n_boot=400, seed=0, groups=groups)
    assert by_patient["difference"] == by_case["difference"] and by_patient["n_patients"] == n_patients
    width = lambda r: r["ci95"][1] - r["ci95"][0]  # noqa: E731
    assert width(by_patient) > 1.2 * width(by_case)  # 0.135 vs 0.106 with this seed
    assert "over patients" in by_patient["method"] and by_case["n_patients"] is None
    with pytest.raises(ValueError, match="one id per case"):
        paired_auroc_test(y, a, b, n_boot=10, groups=groups[:-1])
