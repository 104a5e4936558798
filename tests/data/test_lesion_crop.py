"""The lesion box and crop of lesion-aware classification, on synthetic masks with known boxes."""

import numpy as np
import pytest

from breastdx.data.lesion_crop import crop, lesion_box
from breastdx.inference.lesion_crop import choose_fusion_weight, fuse


def test_box_is_square_with_margin_around_the_lesion():
    mask = np.zeros((200, 300), bool)
    mask[80:100, 140:180] = True  # 20 x 40 lesion, centre (90, 160)
    y0, y1, x0, x1 = lesion_box(mask, margin=0.25)
    assert (y1 - y0, x1 - x0) == (60, 60)  # 40 * (1 + 2 * 0.25)
    assert (y0 + y1) / 2 == 90 and (x0 + x1) / 2 == 160


def test_box_keeps_the_largest_component_and_shifts_inside_the_image():
    mask = np.zeros((100, 100), bool)
    mask[0:30, 0:30] = True  # the largest lesion, in the corner
    mask[90:93, 90:93] = True  # a speck
    box = lesion_box(mask, margin=0.5)
    assert box == (0, 60, 0, 60)  # 30 * 2 = 60, centred at 15, shifted to start at 0


def test_box_is_clipped_to_the_image_and_empty_mask_gives_the_whole_image():
    mask = np.zeros((50, 80), bool)
    mask[5:45, 10:70] = True
    assert lesion_box(mask, margin=0.5) == (0, 50, 0, 80)
    assert lesion_box(np.zeros((50, 80), bool)) == (0, 50, 0, 80)


def test_small_lesion_gets_the_minimum_side_and_crop_cuts_image_and_mask_alike():
    image = np.arange(100 * 100, dtype=np.int64).reshape(100, 100).astype(np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[50, 50] = True
    box = lesion_box(mask, margin=0.3, min_side=32)
    assert box[1] - box[0] == 32 and box[3] - box[2] == 32
    c_im, c_mask = crop(image, box), crop(mask, box)
    assert c_im.shape == c_mask.shape == (32, 32)
    assert c_mask.sum() == 1 and c_im[c_mask][0] == image[50, 50]


def test_bad_masks_and_margins_are_refused():
    with pytest.raises(ValueError, match="2-D"):
        lesion_box(np.zeros((4, 4, 3), bool))
    with pytest.raises(ValueError, match="margin"):
        lesion_box(np.ones((4, 4), bool), margin=-0.1)


def test_fusion_weight_is_chosen_by_validation_nll():
    labels = np.array([0, 1, 1, 0])
    good = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.7, 0.3]])
    bad = np.full((4, 2), 0.5)
    weight, nll = choose_fusion_weight(labels, good, bad)
    assert weight == 1.0 and nll[1.0] < nll[0.5] < nll[0.0]
    assert choose_fusion_weight(labels, bad, good)[0] == 0.0
    np.testing.assert_allclose(fuse(good, bad, 0.5), 0.5 * good + 0.25)
    with pytest.raises(ValueError, match="shape"):
        fuse(good, bad[:2], 0.5)
