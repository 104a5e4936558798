"""Three-class targets (background, interior, boundary) and the patch datasets of nucleus segmentation."""

import numpy as np
import pytest
import torch

from breastdx.data.nucleus_patches import NucleusCrops, NucleusPatches, PatchAugment, nucleus_distance, nucleus_targets


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


def _epochs(workers: int, n_epochs: int = 3) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    ds = NucleusPatches([rng.integers(0, 256, (45, 47, 3), dtype=np.uint8)], [np.zeros((45, 47), np.uint8)],
                        size=16, n=8, augment=None, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers,
                                         persistent_workers=workers > 0)
    return [torch.cat([b["image"] for b in loader]) for _ in range(n_epochs)]


def test_every_epoch_draws_fresh_patches_with_loader_workers_too():
    """Each worker counts only its own draws: with 2 workers, epochs 0 and 1 drew the same patches (and with
    ``W`` workers, ``W`` epochs in a row). In one process item ``i`` of epoch ``e`` keeps its draw."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 47, 3), dtype=np.uint8)
    single = _epochs(0)
    key = np.random.default_rng([0, 1, 3])  # seed 0, epoch 1, item 3: the draw of one process, unchanged
    key.integers(1)  # the tile: one here
    r, c = int(key.integers(0, 45 - 16 + 1)), int(key.integers(0, 47 - 16 + 1))
    rot, flip = int(key.integers(4)), bool(key.integers(2))
    patch = np.rot90(image[r:r + 16, c:c + 16], rot)
    torch.testing.assert_close(single[1][3], torch.from_numpy(np.ascontiguousarray(
        patch[:, ::-1] if flip else patch).transpose(2, 0, 1)).float() / 255)
    workers = _epochs(2)
    for epochs in (single, workers):
        assert not any(torch.equal(epochs[a], epochs[b]) for a, b in ((0, 1), (1, 2), (0, 2)))
    for a, b in zip(workers, _epochs(2)):  # the same from run to run with the same number of workers
        assert torch.equal(a, b)


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


def test_distance_peaks_at_one_in_each_nucleus_and_dips_where_they_touch():
    labels = np.zeros((9, 13), np.int32)
    labels[2:7, 1:6] = 1  # 5 x 5: inner outline 1, the 3 x 3 ring inside 2, the centre 3 (1 + distance)
    labels[2:7, 6:11] = 2  # touches nucleus 1 along a column
    labels[0, 12] = 3  # a one-pixel nucleus
    d = nucleus_distance(labels)
    assert d.dtype == np.float32 and d.shape == labels.shape
    assert (d[labels == 0] == 0).all()
    np.testing.assert_allclose(d[2:7, 1:6], np.array([[1, 1, 1, 1, 1], [1, 2, 2, 2, 1], [1, 2, 3, 2, 1],
                                                      [1, 2, 2, 2, 1], [1, 1, 1, 1, 1]]) / 3, rtol=1e-6)
    assert d[4, 3] == d[4, 8] == 1.0 and d[4, 5] == d[4, 6] == pytest.approx(1 / 3)  # the valley between
    assert d[0, 12] == 1.0
    # a disc of radius 20 and one of 5 both peak at 1: the scale is per nucleus
    yy, xx = np.mgrid[:60, :90]
    discs = np.where(np.hypot(yy - 30, xx - 25) < 20, 1, 0) + np.where(np.hypot(yy - 30, xx - 75) < 5, 2, 0)
    d = nucleus_distance(discs)
    assert d[30, 25] == pytest.approx(1.0) and d[30, 75] == pytest.approx(1.0)
    assert d[30, 6] < 0.1 and d[30, 71] == pytest.approx(1 / 5)  # next to the small disc's outline
    assert not nucleus_distance(np.zeros((4, 4), np.int32)).any()


def test_distance_maps_travel_with_the_class_maps():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (48, 52, 3), dtype=np.uint8) for _ in range(2)]
    labels = [np.kron(rng.integers(0, 4, (12, 13)), np.ones((4, 4), np.int64)) for _ in range(2)]
    targets = [nucleus_targets(lab) for lab in labels]
    distances = [nucleus_distance(lab) for lab in labels]
    for augment in (PatchAugment(), PatchAugment(scale=0.2), None):
        ds = NucleusPatches(images, targets, size=16, n=6, seed=2, augment=augment, distances=distances)
        for i in range(6):
            item = ds[i]
            assert item["distance"].shape == (1, 16, 16) and item["distance"].dtype == torch.float32
            if augment is None or augment.scale == 0:  # same cut, turn and mirror: > 0 exactly on nuclei
                assert torch.equal(item["distance"] > 0, item["mask"] > 0)
            assert 0 <= item["distance"].min() and item["distance"].max() <= 1
    without = NucleusPatches(images, targets, size=16, n=6, seed=2)[0]
    assert "distance" not in without
    torch.testing.assert_close(without["mask"], NucleusPatches(images, targets, size=16, n=6, seed=2,
                                                               distances=distances)[0]["mask"])
    crop = NucleusCrops(images, targets, [(1, 8, 4, 16, 32)], distances=distances)[0]
    torch.testing.assert_close(crop["distance"][0], torch.from_numpy(distances[1][8:24, 4:36]))
    with pytest.raises(ValueError, match="distance maps"):
        NucleusPatches(images, targets, size=16, n=6, distances=distances[:1])


def test_fading_lightens_the_nuclei_and_leaves_the_background():
    from breastdx.data.stain import hed_od_to_rgb, rgb_to_hed_od
    from breastdx.data.nucleus_patches import fade_nuclei

    hed = np.zeros((20, 30, 3))
    hed[..., 1] = 0.2  # eosin everywhere
    nuclei = np.zeros((20, 30), bool)
    nuclei[5:15, 5:15] = True
    hed[nuclei, 0] = 0.8  # haematoxylin in the nucleus
    image = hed_od_to_rgb(hed).astype(np.float32)
    faded = fade_nuclei(image, nuclei, 0.5)
    assert faded.dtype == np.float32 and faded.shape == image.shape
    back = rgb_to_hed_od(faded)
    assert back[10, 10, 0] == pytest.approx(0.4, abs=1e-3)  # the centre's haematoxylin halved
    assert back[10, 10, 1] == pytest.approx(0.2, abs=1e-3)  # its eosin kept
    np.testing.assert_array_equal(faded[:, 20:], image[:, 20:])  # far from the nucleus: untouched
    assert faded[10, 10].mean() > image[10, 10].mean()  # paler
    np.testing.assert_allclose(fade_nuclei(image, nuclei, 1.0), image, atol=1e-6)
    # in patches: the same positions and turns (drawn first), other colours
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)]
    targets = [rng.integers(0, 3, (37, 41), dtype=np.uint8)]
    plain = [NucleusPatches(images, targets, size=16, n=8, seed=3)[i] for i in range(8)]  # one epoch each
    pale = [NucleusPatches(images, targets, size=16, n=8, seed=3, augment=PatchAugment(pale_nuclei=0.6))[i]
            for i in range(8)]
    assert all(torch.equal(a["mask"], b["mask"]) for a, b in zip(plain, pale))
    assert any(not torch.equal(a["image"], b["image"]) for a, b in zip(plain, pale))
