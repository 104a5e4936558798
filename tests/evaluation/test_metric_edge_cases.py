"""Review of the metric code: defects found and their regression tests (golden values by hand or from scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest

from breastdx.evaluation.conformal import conformity_scores, prediction_sets


@pytest.mark.parametrize("label", [0, 1, 2])
def test_aps_set_at_a_cases_own_score_holds_its_class_when_probabilities_tie(label):
    """Coverage rests on 'the true class is in the set whenever its score <= qhat'. With two classes of equal
    probability (0.4, 0.4) the score counts only the mass strictly above the class, so the set must too: both tied
    classes are in or out together, whatever their order."""
    prob = np.array([[0.4, 0.4, 0.2], [0.3, 0.3, 0.4], [0.2, 0.4, 0.4], [0.5, 0.25, 0.25]])
    y = np.full(len(prob), label)
    scores = conformity_scores(prob, y, "aps")
    for i in range(len(prob)):
        sets = prediction_sets(prob[i:i + 1], float(scores[i]), "aps")[0]
        assert sets[label], (prob[i], label, scores[i], sets)
        ties = prob[i] == prob[i, label]
        assert sets[ties].all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_binary_metrics_refuse_a_non_finite_probability(bad):
    """A NaN probability used to be called benign (NaN >= 0.5 is False), so 2 of 2 malignant found with one case
    undefined read accuracy 1.0; the metrics now refuse it, as bootstrap_ci does through them."""
    from breastdx.evaluation.metrics import binary_metrics, bootstrap_ci

    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, bad, 0.8, 0.9])
    with pytest.raises(ValueError, match="NaN or infinite"):
        binary_metrics(y, p)
    with pytest.raises(ValueError, match="NaN or infinite"):
        bootstrap_ci(y, p, n_boot=10)


def test_instance_scores_keep_zero_as_background_beside_negative_labels():
    """Labels are 'any values' with 0 the background: a nucleus labelled -1 used to push 0 to the second id, so the
    background became a predicted nucleus (AJI 4 / 16 here instead of 1)."""
    from breastdx.evaluation.instances import aji, contingency, panoptic_quality

    target = np.zeros((4, 4), np.int32)
    target[:2, :2] = 5
    pred = np.where(target == 5, -1, 0)
    table, area_g, area_p = contingency(pred, target)
    assert table.tolist() == [[12, 0], [0, 4]] and area_g.tolist() == [4] and area_p.tolist() == [4]
    assert aji(pred, target) == 1.0
    assert panoptic_quality(pred, target)["pq"] == 1.0
    both = np.array([[-2, 0, 3], [0, 0, 3]])  # -2, 3: two nuclei, numbered 1 and 2 in label order
    assert contingency(both, both)[0].tolist() == [[3, 0, 0], [0, 1, 0], [0, 0, 2]]


def test_delong_zero_variance_with_a_difference_is_not_z_zero():
    """A perfect model A against a constant B: AUROC 1 vs 0.5 with every placement alike, so se = 0. z was 0.0 (which
    means no difference) beside p = 0; it is now +inf, and z = 0, p = 1 stays for identical rankings."""
    from breastdx.evaluation.paired import delong_test

    y = np.array([0, 0, 0, 1, 1])
    a = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    r = delong_test(y, a, np.full(5, 0.5))
    assert r["difference"] == 0.5 and r["se"] == 0.0 and r["p_value"] == 0.0 and r["z"] == np.inf
    assert delong_test(y, np.full(5, 0.5), a)["z"] == -np.inf
    same = delong_test(y, a, a * 2)
    assert same["z"] == 0.0 and same["p_value"] == 1.0


def test_mean_and_proportion_ci_drop_infinite_values_as_their_docstrings_say():
    from breastdx.evaluation.ci import mean_ci, proportion_ci

    assert mean_ci([1.0, 2.0, np.inf, np.nan], n_boot=10)["value"] == 1.5
    assert mean_ci([1.0, 2.0, -np.inf], n_boot=10)["n"] == 2
    assert proportion_ci([1.0, 0.0, np.inf], n_boot=10)["n"] == 2


def test_calibrate_table_starts_with_a_header_row(tmp_path):
    """RunResult.table is a header row, then data rows: calibrate's first row was its first record, so --fit
    temperature printed the temperature as the table's header and no row under it."""
    import os
    import shutil
    from pathlib import Path

    data = Path(os.environ.get("BREASTDX_DATA", "/nonexistent"))
    if not (data / "breastmnist" / "breastmnist.npz").is_file():
        pytest.skip("needs BREASTDX_DATA with breastmnist/breastmnist.npz")
    from breastdx.pipeline.calibrate import calibrate
    from breastdx.tasks import get_task
    from breastdx.zoo import resolve_model

    model = Path(shutil.copytree(resolve_model(None, "breastmnist"), tmp_path / "model"))
    (tmp_path / "run").mkdir()
    result = calibrate(get_task("breastmnist"), model, data, tmp_path / "run", {"fit": "temperature"})
    assert result.table[0][0] == "fitted" and [row[0] for row in result.table[1:]] == ["temperature"]


def test_instance_scores_count_a_negative_label_as_a_nucleus_in_dice_and_counts_too():
    """contingency, AJI and PQ take every non-zero label as a nucleus, but the foreground Dice and n_pred used '> 0':
    a nucleus labelled -1 was background for Dice (2 / 9 here instead of 10 / 13) and missing from n_pred, so
    n_pred (1) disagreed with tp + fp (2)."""
    from breastdx.evaluation.instances import instance_scores

    target = np.zeros((4, 4), np.int32)
    target[:2, :2] = 5
    target[2:, 2:] = 7
    pred = np.where(target == 5, -1, 0)
    pred[3, 3] = 2
    s = instance_scores(pred, target)
    assert s["dice"] == pytest.approx(2 * 5 / (5 + 8))
    assert s["n_pred"] == s["tp"] + s["fp"] == 2 and s["n_ref"] == s["tp"] + s["fn"] == 2
