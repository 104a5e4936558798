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


def test_scale_zooms_image_and_class_map_together():
    from breastdx.data.nucleus_patches import _resize_pair

    image = np.zeros((8, 8, 3), np.uint8)
    image[:4, :4] = 200
    target = np.zeros((8, 8), np.uint8)
    target[:4, :4] = 2
    x, y = _resize_pair(image, target, 16)
    assert x.shape == (16, 16, 3) and x.dtype == np.uint8 and y.shape == (16, 16) and y.dtype == np.uint8
    assert (y[:8, :8] == 2).all() and (y[8:] == 0).all() and (y[:, 8:] == 0).all()  # nearest: no new class
    assert x[2, 2, 0] == 200 and x[13, 13, 0] == 0

    rng = np.random.default_rng(1)
    labels = np.zeros((64, 64), np.int32)
    for i, (r, c) in enumerate(rng.integers(4, 56, (12, 2)), 1):
        labels[r - 3:r + 4, c - 3:c + 4] = i
    images = [np.repeat(np.where(labels[..., None] > 0, 60, 230), 3, axis=2).astype(np.uint8)]
    targets = [nucleus_targets(labels, 1)]
    plain = PatchAugment(hed_sigma=0, hed_bias=0, brightness=0, contrast=0)
    zoom = PatchAugment(hed_sigma=0, hed_bias=0, brightness=0, contrast=0, scale=0.4)
    sizes = set()
    for i in range(8):
        a = NucleusPatches(images, targets, size=32, n=8, augment=plain, seed=0)[i]
        b = NucleusPatches(images, targets, size=32, n=8, augment=zoom, seed=0)[i]
        assert b["image"].shape == (3, 32, 32) and set(b["mask"].unique().tolist()) <= {0, 1, 2}
        dark = b["image"][0] < 0.5  # nuclei stay where the class map says they are
        assert (dark == (b["mask"][0] > 0)).float().mean() > 0.9
        sizes.add(int((b["mask"] > 0).sum()) - int((a["mask"] > 0).sum()))
    assert len(sizes) > 1  # the zoom changed how much of the patch nuclei cover


def test_blur_smooths_some_patches_only():
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)]
    targets = [np.zeros((48, 48), np.uint8)]
    plain = PatchAugment(hed_sigma=0, hed_bias=0, brightness=0, contrast=0)
    blur = PatchAugment(hed_sigma=0, hed_bias=0, brightness=0, contrast=0, blur_sigma=2.0)

    def roughness(item):
        return float(item["image"].diff(dim=-1).abs().mean())

    ratios = [roughness(NucleusPatches(images, targets, 24, 16, augment=blur, seed=0)[i])
              / roughness(NucleusPatches(images, targets, 24, 16, augment=plain, seed=0)[i]) for i in range(16)]
    assert sum(r < 0.7 for r in ratios) >= 3 and sum(r == pytest.approx(1.0) for r in ratios) >= 3
