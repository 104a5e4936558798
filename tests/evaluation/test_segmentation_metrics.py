"""Segmentation scores: hand-computed Dice / IoU / HD95, empty-mask conventions, bootstrap CIs, summaries."""

import math

import numpy as np
import pytest
import torch

from breastdx.evaluation.ci import mean_ci
from breastdx.evaluation.segmentation import case_scores, dice_iou, dice_per_case, hd95, summarize_segmentation


def test_dice_iou_golden():
    # reference: 2 pixels; prediction: 3 pixels, 2 of them correct -> Dice 2*2/5 = 0.8, IoU 2/3
    target = np.array([[1, 1, 0], [0, 0, 0]], bool)
    pred = np.array([[1, 1, 1], [0, 0, 0]], bool)
    dice, iou = dice_iou(pred, target)
    assert dice == pytest.approx(0.8)
    assert iou == pytest.approx(2 / 3)


def test_dice_per_case_golden_in_numpy_and_torch():
    # case 0: the 0.8 example above; case 1: both empty -> 1; case 2: a lesion missed -> 0; odd size 2 x 3
    target = np.array([[[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 1, 0]]], bool)
    pred = np.array([[[1, 1, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]], bool)
    out = dice_per_case(pred, target)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (3,)
    np.testing.assert_allclose(out, [0.8, 1.0, 0.0])
    t = dice_per_case(torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None].float())  # (B, 1, H, W)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (3,)
    torch.testing.assert_close(t, torch.tensor([0.8, 1.0, 0.0]))
    assert [dice_iou(p, q)[0] for p, q in zip(pred, target)] == pytest.approx(out.tolist())
    with pytest.raises(ValueError, match=r"same shape, got prediction \(3, 2, 3\) and reference \(3, 3, 2\)"):
        dice_per_case(pred, np.zeros((3, 3, 2)))


def test_empty_mask_conventions():
    empty = np.zeros((3, 4), bool)
    one = empty.copy()
    one[1, 1] = True
    assert dice_iou(empty, empty) == (1.0, 1.0)
    assert dice_iou(one, empty) == (0.0, 0.0)
    assert dice_iou(empty, one) == (0.0, 0.0)
    assert hd95(empty, empty) == 0.0
    assert hd95(one, empty) == pytest.approx(5.0)  # the diagonal of a 3 x 4 image
    assert hd95(empty, one, spacing=(2.0, 0.5)) == pytest.approx(math.hypot(6.0, 2.0))


def test_hd95_single_pixels_and_spacing():
    a = np.zeros((7, 9), bool)
    b = np.zeros((7, 9), bool)
    a[0, 0] = True
    b[3, 4] = True
    assert hd95(a, b) == pytest.approx(5.0)
    assert hd95(a, b, spacing=(2.0, 1.0)) == pytest.approx(math.hypot(6.0, 4.0))
    assert hd95(a, a) == 0.0


def test_hd95_shifted_squares():
    # Two 5x5 squares, one shifted 3 pixels right: every boundary pixel is within 3 px of the other boundary,
    # and the left edge of the first is exactly 3 px from the nearest boundary pixel of the second.
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[5:10, 5:10] = True
    b[5:10, 8:13] = True
    d = hd95(a, b, percentile=100)
    assert d == pytest.approx(3.0)


def test_hd95_matches_monai():
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(0)
    for _ in range(5):
        a = np.zeros((33, 41), bool)
        b = np.zeros((33, 41), bool)
        r, c = rng.integers(5, 25, size=2)
        a[r - 4:r + 5, c - 3:c + 6] = True
        b[r - 2 + rng.integers(-3, 4):r + 6, c - 5:c + 4 + rng.integers(0, 5)] = True
        ours = hd95(a, b)
        ref = compute_hausdorff_distance(torch.from_numpy(a)[None, None].float(),
                                         torch.from_numpy(b)[None, None].float(),
                                         include_background=True, percentile=95).item()
        assert ours == pytest.approx(ref, abs=1e-5)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="same shape"):
        dice_iou(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="spacing"):
        hd95(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, -1.0))


def test_case_scores_flags():
    t = np.zeros((10, 10), bool)
    p = t.copy()
    p[2:4, 2:4] = True
    s = case_scores(p, t)
    assert s["false_positive"] and not s["missed"] and s["fp_area_px"] == 4 and s["hd95_mm"] is None
    s = case_scores(t, p, spacing=(0.1, 0.1))
    assert s["missed"] and s["dice"] == 0.0 and s["hd95_mm"] == pytest.approx(math.hypot(1.0, 1.0))


def test_mean_ci():
    out = mean_ci([0.5] * 10, n_boot=100)
    assert out == {"value": 0.5, "ci95": [0.5, 0.5], "n": 10}
    out = mean_ci([0, 1, 1, 0, float("nan")], n_boot=500, seed=1)
    assert out["value"] == 0.5 and out["n"] == 4
    assert 0.0 <= out["ci95"][0] < 0.5 < out["ci95"][1] <= 1.0
    assert mean_ci([0, 1, 1, 0], seed=3) == mean_ci([0, 1, 1, 0], seed=3)
    assert math.isnan(mean_ci([])["value"])
    with pytest.raises(ValueError, match="shape"):
        mean_ci(np.zeros((2, 2)))


def test_a_share_of_none_or_all_gets_the_wilson_interval():
    """0 of 10 lesions missed was reported 0.000 [0.000, 0.000] (every bootstrap resample the same): certainty that
    10 cases cannot give. Golden values of the Wilson score interval (z = 1.95996)."""
    from breastdx.evaluation.ci import proportion_ci, wilson_interval

    out = proportion_ci([0.0] * 10)
    assert out["value"] == 0.0 and out["n"] == 10 and set(out) == {"value", "ci95", "n"}
    assert out["ci95"] == pytest.approx([0.0, 0.27753], abs=1e-5)
    assert proportion_ci([1, 1, 1, 1, float("nan")])["ci95"] == pytest.approx([0.51010, 1.0], abs=1e-5)
    assert wilson_interval(3, 4) == pytest.approx((0.30064, 0.95441), abs=1e-5)
    assert proportion_ci([0, 1, 1], seed=2) == mean_ci([0, 1, 1], seed=2)  # otherwise the bootstrap, as before
    assert mean_ci([0.0] * 10)["ci95"] == [0.0, 0.0]  # a mean of Dice values of 0 is no share: left as it is
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="indicators of 0 or 1"):
        proportion_ci([0.5, 1.0])


def test_summarize_segmentation_per_class_and_normal_fp():
    scores = [
        {"dice": 0.8, "iou": 0.7, "hd95": 2.0, "missed": False, "false_positive": False},
        {"dice": 0.6, "iou": 0.5, "hd95": 4.0, "missed": False, "false_positive": False},
        {"dice": 0.0, "iou": 0.0, "hd95": 50.0, "missed": True, "false_positive": False},
        {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "missed": False, "false_positive": False},
        {"dice": 0.0, "iou": 0.0, "hd95": 40.0, "missed": False, "false_positive": True},
    ]
    labels = ["benign", "benign", "malignant", "normal", "normal"]
    m = summarize_segmentation(scores, labels, n_boot=200)
    assert m["dice"]["value"] == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    assert m["dice_benign"]["value"] == pytest.approx(0.7)
    assert m["hd95_malignant"]["value"] == pytest.approx(50.0)
    assert m["missed_share"]["value"] == pytest.approx(1 / 3)
    assert m["normal_fp_share"]["value"] == pytest.approx(0.5)
    assert "hd95_mm" not in m
    for v in m.values():
        assert set(v) == {"value", "ci95", "n"}
    with pytest.raises(ValueError, match="labels"):
        summarize_segmentation(scores, labels[:2])
