"""Outlines of instance masks on an image."""

import numpy as np
import pytest

from breastdx.visualize.instances import PREDICTION_COLOUR, REFERENCE_COLOUR, instance_outlines, instance_overlay


def test_outlines_and_overlay():
    labels = np.zeros((9, 13), np.int32)
    labels[2:7, 1:6] = 1
    labels[2:7, 6:11] = 2  # touching: the contact is outlined on both sides
    edges = instance_outlines(labels)
    assert edges[4, 5] and edges[4, 6] and not edges[4, 3] and not edges[0, 0]
    image = np.full((9, 13), 100, np.uint8)
    out = instance_overlay(image, labels, reference=np.pad(np.ones((3, 3), np.int32), ((3, 3), (5, 5))))
    assert out.shape == (9, 13, 3) and out.dtype == np.uint8
    assert tuple(out[2, 1]) == PREDICTION_COLOUR and tuple(out[0, 0]) == (100, 100, 100)
    assert tuple(out[4, 3]) == (100, 100, 100)  # an interior pixel is left alone
    ref_only = instance_overlay(image, np.zeros_like(labels), reference=labels)
    assert tuple(ref_only[2, 1]) == REFERENCE_COLOUR
    with pytest.raises(ValueError, match=r"Label mask of shape \(3, 3\)"):
        instance_overlay(image, np.zeros((3, 3), np.int32))
