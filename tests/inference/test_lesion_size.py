"""The lesion's longest diameter (maximum Feret diameter): golden values on a disc and a rectangle, scikit-image's
figure on random shapes, and the per-axis spacing."""

import numpy as np
import pytest
from scipy import ndimage

from breastdx.inference.lesion_size import max_feret_diameter


def test_golden_disc_and_rectangle():
    yy, xx = np.mgrid[:101, :103]
    disc = (yy - 50) ** 2 + (xx - 51) ** 2 <= 40 ** 2  # 81 pixels across
    px, mm = max_feret_diameter(disc, (0.08, 0.08))
    assert px == pytest.approx(81.5414, abs=1e-3)  # contour at level 0.5: the 81 pixels' centres +- about 1/4
    assert mm == pytest.approx(px * 0.08, rel=1e-9)  # 6.523 mm
    rect = np.zeros((50, 61), bool)
    rect[10:40, 5:45] = True  # 30 x 40 pixels
    px, mm = max_feret_diameter(rect, (0.5, 0.25))
    assert px == pytest.approx(49.4065, abs=1e-3)  # about the diagonal, sqrt(30² + 40²) = 50, corners cut by 1/2 px
    assert mm == pytest.approx(17.8903, abs=1e-3)  # per axis: about sqrt(15² + 10²) = 18.03, not 49.41 x any spacing
    assert max_feret_diameter(rect)[1] is None
    assert max_feret_diameter(np.zeros((5, 7), bool)) == (0.0, None)
    assert max_feret_diameter(np.zeros((5, 7), bool), (0.1, 0.1)) == (0.0, 0.0)
    dot = np.zeros((5, 7), bool)
    dot[2, 3] = True
    assert max_feret_diameter(dot) == (1.0, None)
    line = np.zeros((9, 9), bool)
    line[2, 1:7] = True
    assert max_feret_diameter(line)[0] == pytest.approx(6.0)


def test_largest_component_only_and_as_scikit_image():
    from skimage.measure import regionprops

    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = np.zeros((41, 47), bool)
        for _ in range(3):
            r, c = rng.integers(0, 41), rng.integers(0, 47)
            mask[r:r + rng.integers(1, 16), c:c + rng.integers(1, 16)] = True
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
        largest = (labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1).astype(np.uint8)
        px, mm = max_feret_diameter(mask, (0.3, 0.1))
        assert px == pytest.approx(regionprops(largest)[0].feret_diameter_max, abs=1e-9)
        assert mm == pytest.approx(regionprops(largest, spacing=(0.3, 0.1))[0].feret_diameter_max, abs=1e-9)


def test_hull_image_is_scikit_images_on_random_masks_and_ellipses():
    from skimage.morphology import convex_hull_image as skimage_hull

    from breastdx.inference.lesion_size import convex_hull_image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:37, :29]
    for trial in range(300):
        if trial % 2:  # scattered pixels: many hull edges through pixel centres
            mask = rng.random((37, 29)) < rng.uniform(0.01, 0.3)
        else:  # a rotated ellipse
            cy, cx, a, b, th = rng.uniform(5, 30), rng.uniform(5, 24), rng.uniform(0.5, 12), rng.uniform(0.5, 12), rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
            v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
            mask = (u / a) ** 2 + (v / b) ** 2 <= 1
        if mask.sum() < 3:
            continue
        np.testing.assert_array_equal(convex_hull_image(mask), skimage_hull(mask), err_msg=f"trial {trial}")
