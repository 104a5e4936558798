"""AJI, panoptic quality and foreground Dice of instance masks on hand-computed examples."""

import numpy as np
import pytest

from breastdx.evaluation.instances import aji, contingency, instance_scores, panoptic_quality


def _example():
    # reference: nucleus 1 (4 px) and nucleus 2 (2 px); prediction: 5 overlaps nucleus 1 by 2 of its 3 px,
    # 6 is nucleus 2 exactly, 7 (3 px) overlaps nothing. Odd size 5 x 6.
    target = np.zeros((5, 6), np.int32)
    target[0, 0:4] = 1
    target[2, 0:2] = 2
    pred = np.zeros((5, 6), np.int32)
    pred[0, 0:2] = 5
    pred[1, 0] = 5
    pred[2, 0:2] = 6
    pred[4, 3:6] = 7
    return pred, target


def test_aji_golden():
    pred, target = _example()
    # C = |1 ∩ 5| + |2 ∩ 6| = 2 + 2; U = |1 ∪ 5| + |2 ∪ 6| + |7| = 5 + 2 + 3
    assert aji(pred, target) == pytest.approx(0.4)
    assert aji(target, target) == 1.0
    assert aji(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert aji(np.zeros((3, 3)), np.eye(3)) == 0.0


def test_pq_golden():
    pred, target = _example()
    # IoU(1, 5) = 2/5 is not a match; (2, 6) has IoU 1: TP 1, FP 2, FN 1 -> DQ = 1 / (1 + 1 + 0.5), SQ = 1
    pq = panoptic_quality(pred, target)
    assert (pq["tp"], pq["fp"], pq["fn"]) == (1, 2, 1)
    assert pq["sq"] == pytest.approx(1.0) and pq["dq"] == pytest.approx(0.4) and pq["pq"] == pytest.approx(0.4)
    assert panoptic_quality(np.zeros((2, 2)), np.zeros((2, 2)))["pq"] == 1.0


def test_one_prediction_over_two_nuclei():
    # a merged prediction over two touching nuclei: AJI counts it once with each nucleus' best pair (the first)
    target = np.array([[1, 1, 2, 2]])
    pred = np.array([[3, 3, 3, 3]])
    assert aji(pred, target) == pytest.approx((2 + 2) / (4 + 4))
    assert panoptic_quality(pred, target)["tp"] == 0  # IoU 0.5 is not above 0.5


def test_instance_scores():
    pred, target = _example()
    s = instance_scores(pred, target)
    assert s["dice"] == pytest.approx(2 * 4 / (8 + 6))
    assert s["n_pred"] == 3 and s["n_ref"] == 2
    with pytest.raises(ValueError, match=r"same shape, got prediction \(5, 6\) and reference \(6, 5\)"):
        aji(pred, target.T)


def test_contingency_counts_overlaps_and_areas():
    target = np.array([[0, 5, 5],
                       [0, 5, 9],
                       [0, 0, 9]])
    pred = np.array([[2, 2, 2],
                     [0, 7, 7],
                     [0, 0, 0]])
    table, area_g, area_p = contingency(pred, target)
    # rows: background, reference 5, reference 9; columns: background, predicted 2, predicted 7
    assert table.tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 1]]
    assert area_g.tolist() == [3, 2] and area_p.tolist() == [3, 2]
    with pytest.raises(ValueError, match="same shape"):
        contingency(pred, target[:2])
