"""Three-class targets (background, interior, boundary) and the patch datasets of nucleus segmentation."""

import numpy as np
import pytest
import torch

from breastdx.data.nucleus_patches import NucleusCrops, NucleusPatches, PatchAugment, nucleus_targets


def test_targets_separate_touching_nuclei():
    labels = np.zeros((9, 13), np.int32)
    labels[2:7, 1:6] = 1
    labels[2:7, 6:11] = 2  # touches nucleus 1 along a column
    t = nucleus_targets(labels, boundary_width=1)
    assert t.dtype == np.uint8 and t.shape == labels.shape
    assert (t[labels == 0] == 0).all()
    assert t[4, 5] == 2 and t[4, 6] == 2  # both sides of the contact are boundary
    assert t[4, 3] == 1 and t[4, 8] == 1  # centres are interior
    assert (t == 1).sum() == 2 * 3 * 3  # each 5 x 5 square keeps a 3 x 3 interior
    wide = nucleus_targets(labels, boundary_width=2)
    assert (wide == 1).sum() == 2 * 1 * 1


def test_patches_are_reproducible_and_augmented():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (37, 41, 3), dtype=np.uint8) for _ in range(2)]
    targets = [rng.integers(0, 3, (37, 41), dtype=np.uint8) for _ in range(2)]
    ds = NucleusPatches(images, targets, size=16, n=5, rows=(0, 20), seed=3)
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 16, 16) and item["mask"].dtype == torch.int64
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    again = NucleusPatches(images, targets, size=16, n=5, rows=(0, 20), seed=3)[0]
    torch.testing.assert_close(item["image"], again["image"])
    plain = NucleusPatches(images, targets, size=16, n=5, rows=(0, 20), augment=None, seed=3)[0]
    torch.testing.assert_close(plain["mask"], item["mask"])  # same position and rotation; only colours differ
    assert not torch.equal(plain["image"], item["image"])
    with pytest.raises(ValueError, match="does not fit rows 0-10"):
        NucleusPatches(images, targets, size=16, n=5, rows=(0, 10))
    assert PatchAugment().hed_sigma > 0


def test_crops():
    images = [np.full((20, 30, 3), 255, np.uint8)]
    targets = [np.ones((20, 30), np.uint8)]
    item = NucleusCrops(images, targets, [(0, 4, 2, 16, 16)])[0]
    assert item["image"].shape == (3, 16, 16) and float(item["image"].min()) == 1.0
    assert int(item["mask"].sum()) == 256
