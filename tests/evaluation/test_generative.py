"""KID, improved precision / recall and nearest-patch distances on small synthetic inputs with known answers."""

import numpy as np
import pytest

from breastdx.evaluation.generative import dihedral_views, kid, nearest_patch_distance, precision_recall


def test_kid_of_one_distribution_is_near_zero_and_of_a_shifted_one_is_not():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 7)), rng.normal(size=(300, 7))
    same = kid(a, b, n_subsets=20, subset_size=200)
    shifted = kid(a, b + 1.0, n_subsets=20, subset_size=200)
    assert abs(same["value"]) < 0.02 and same["subset_size"] == 200 and same["n_subsets"] == 20
    assert shifted["value"] > 0.3 > 10 * abs(same["value"])
    assert kid(a, b + 2.0, n_subsets=20, subset_size=200)["value"] > shifted["value"]


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel_on_a_hand_computed_case():
    x = np.array([[0.0], [1.0]])
    y = np.array([[0.0], [2.0]])
    k = lambda u, v: (u * v + 1.0) ** 3  # noqa: E731 - d = 1
    expected = (2 * k(0, 1)) / 2 + (2 * k(0, 2)) / 2 - 2 * (k(0, 0) + k(0, 2) + k(1, 0) + k(1, 2)) / 4
    assert kid(x, y, n_subsets=3)["value"] == pytest.approx(expected)  # every subset is the whole set


def test_precision_and_recall_on_toy_points():
    real = np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]])  # k = 1: every real ball has radius 1
    fake = np.array([[0.5, 0.5], [0.6, 0.4], [10, 10], [10, 11]])  # two inside, two far; fake radii 0.141 and 1
    pr = precision_recall(real, fake, k=1)
    assert pr["precision"] == pytest.approx(0.5)
    # fake ball radii: (0.5,0.5) and (0.6,0.4) 0.1414; (10,10) and (10,11) 1.0: no real point within
    assert pr["recall"] == pytest.approx(0.0)
    assert precision_recall(real, real.copy(), k=1) == {"precision": 1.0, "recall": 1.0, "k": 1}
    with pytest.raises(ValueError, match="k must be in"):
        precision_recall(real, fake, k=4)
    with pytest.raises(ValueError, match="same length d"):
        precision_recall(real, fake[:, :1], k=1)


def test_nearest_patch_distance_finds_turned_copies_only_with_symmetries():
    rng = np.random.default_rng(1)
    refs = rng.integers(0, 256, size=(9, 7, 7, 3), dtype=np.uint8)
    q = np.stack([np.rot90(refs[4], 1), refs[2][:, ::-1]])
    with_sym = nearest_patch_distance(q, refs)
    assert with_sym["distance"].tolist() == [0.0, 0.0] and with_sym["index"].tolist() == [4, 2]
    assert (nearest_patch_distance(q, refs, symmetries=False)["distance"] > 30).all()
    shifted = np.clip(refs[:3].astype(int) + 8, 0, 255).astype(np.uint8)
    exact = nearest_patch_distance(shifted, refs)["distance"]
    assert np.allclose(exact, [np.abs(shifted[i].astype(int) - refs[i]).mean() for i in range(3)])
    assert np.allclose(nearest_patch_distance(shifted, refs, candidates=2)["distance"], exact)
    assert dihedral_views(refs).shape == (8, 9, 7, 7, 3)
    with pytest.raises(ValueError, match="uint8"):
        nearest_patch_distance(q.astype(np.float32), refs)


def test_turning_non_square_patches_is_refused_clearly():
    q = np.zeros((2, 4, 6, 3), np.uint8)
    with pytest.raises(ValueError, match="needs square patches; got 4 x 6"):  # was np.stack's shape error
        nearest_patch_distance(q, q)
    assert nearest_patch_distance(q, q, symmetries=False)["distance"].tolist() == [0.0, 0.0]
