"""Golden values of what the image pipeline measures besides the metrics."""

import numpy as np
import pytest

from breastdx.data.image_sets import ImageSet
from breastdx.pipeline.report import (exact_duplicate_groups, patient_intervals, per_patient, region_mask,
                                      unit_card_text, unit_metrics)


def _set(labels, groups):
    return ImageSet(tuple(str(i) for i in range(len(labels))), np.array(labels), lambda i: (None, None),
                    None if groups is None else tuple(groups))


def test_per_patient_shares_against_hand_counts():
    test = _set([1, 0, 0, 1, 1, 0], ["p2", "p2", "p2", "p10", "p10", "p1"])
    prob = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    out = per_patient(test, prob, threshold=0.55, positive=(1,))
    rows = {r["patient"]: r for r in out["rows"]}
    assert [r["patient"] for r in out["rows"]] == ["p1", "p2", "p10"]  # natural order of the ids
    assert rows["p2"] == {"patient": "p2", "n": 3, "true_share": pytest.approx(1 / 3),
                          "predicted_share": pytest.approx(2 / 3), "mean_p_positive": pytest.approx(1.7 / 3)}
    assert rows["p10"]["true_share"] == 1.0 and rows["p10"]["predicted_share"] == 0.5
    assert rows["p1"]["true_share"] == 0.0 and rows["p1"]["predicted_share"] == 0.0  # 0.5 < threshold 0.55
    assert out["mae"] == pytest.approx((0 + 1 / 3 + 0.5) / 3)
    assert out["pearson_r"] == pytest.approx(np.corrcoef([0, 1 / 3, 1], [0, 2 / 3, 0.5])[0, 1])
    assert per_patient(_set([1, 0], None), prob[:2], 0.5, 1) is None  # no patient ids, no figure


def test_intervals_over_patients_resample_whole_patients():
    test = _set([1, 0, 0, 1, 1, 0], ["p2", "p2", "p2", "p10", "p10", "p1"])
    prob = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    out = patient_intervals(test, prob, 0.55, (1,), n_boot=300, seed=0)
    # at 0.55: positives 0.8 hit, 0.1 miss, 0.7 hit -> 2/3; negatives 0.3, 0.6 (false positive), 0.5 -> 2/3
    assert out["sensitivity"]["value"] == pytest.approx(2 / 3) and out["specificity"]["value"] == pytest.approx(2 / 3)
    assert out["f1"]["value"] == pytest.approx(2 * 2 / (3 + 3))
    assert out["auroc"]["value"] == pytest.approx(6 / 9)  # pairs (pos > neg): 0.8 > all 3, 0.7 > 3, 0.1 > none
    assert out["auroc"]["n_patients"] == 3 and out["auroc"]["n_resamples"] < 300  # one-class resamples are left out
    lo, hi = out["sensitivity"]["ci95"]
    assert 0 <= lo <= hi <= 1 and hi - lo > 0  # patients, not images, vary between resamples
    assert patient_intervals(_set([1, 0], None), prob[:2], 0.5, (1,), 10, 0) is None


def test_lesion_units_give_intervals_over_lesions_only_where_frames_repeat():
    """busi-cls's groups are lesions: intervals over them (no per-patient shares) where two frames share one, and
    nothing where every test image is its own lesion; patients keep their per-patient figures."""
    from types import SimpleNamespace

    lesion = SimpleNamespace(group_unit="lesion", positive="malignant", items="images")
    patient = SimpleNamespace(group_unit="patient", positive="malignant", items="images")
    prob = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    test = _set([1, 0, 0, 1, 1, 0], ["3", "3", "3", "benign (9)", "7", "7"])
    out = unit_metrics(lesion, test, prob, 0.55, (1,), n_boot=200, seed=0)
    assert set(out) == {"metrics_over_lesions"}
    over = out["metrics_over_lesions"]
    assert over["auroc"]["n_lesions"] == 3 and "n_patients" not in over["auroc"]
    clustered = patient_intervals(test, prob, 0.55, (1,), 200, 0)["auroc"]  # the same cluster bootstrap
    assert over["auroc"]["ci95"] == clustered["ci95"] and over["auroc"]["n_resamples"] == clustered["n_resamples"]
    assert over["auroc"]["value"] == pytest.approx(6 / 9)
    assert "3 lesions of the 6 test images (2 imaged more than once)" in over["note"]
    assert "AUROC (malignant) 0.667 [" in unit_card_text(lesion, test, prob, 0.55, (1,), 200, 0)
    single = _set([1, 0, 1], ["a", "b", "c"])
    assert unit_metrics(lesion, single, prob[:3], 0.55, (1,), 50, 0) == {}
    assert unit_card_text(lesion, single, prob[:3], 0.55, (1,), 50, 0) == ""
    assert set(unit_metrics(patient, single, prob[:3], 0.55, (1,), 50, 0)) == {"per_patient", "metrics_over_patients"}
    assert unit_card_text(patient, test, prob, 0.55, (1,), 50, 0) == ""  # idc / breakhis cards unchanged


def test_duplicates_and_label_region():
    images = np.zeros((4, 2, 2), np.uint8)
    images[1, 0, 0] = 1
    assert exact_duplicate_groups(images) == [[0, 2, 3]]
    mask = region_mask((96, 96), 32 / 96)
    assert mask.sum() == 32 * 32 and mask[32:64, 32:64].all()
