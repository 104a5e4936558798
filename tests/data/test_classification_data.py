"""Classification datasets (cached, resized, masks optional) and the class-imbalance helpers."""

import numpy as np
import pytest
import torch

from breastdx.data.classification import ClassificationDataset, balanced_sampler, class_weights, resize_for_network
from breastdx.data.transforms import Preprocessing, ultrasound_augmentation

NAMES = ("normal", "benign", "malignant")


def _images(n=5, h=33, w=47, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h + i, w), dtype=np.uint8) for i in range(n)]


def test_from_arrays_caches_resized_images_and_masks():
    images = _images()
    masks = [np.zeros(im.shape, bool) for im in images]
    masks[1][5:20, 10:30] = True
    ds = ClassificationDataset.from_arrays(images, [0, 1, 2, 1, 1], Preprocessing(image_size=32), NAMES, masks=masks)
    assert ds.images.shape == (5, 32, 32) and ds.images.dtype == np.uint8
    assert ds.masks.shape == (5, 32, 32) and ds.masks[1].any() and not ds.masks[0].any()
    item = ds[1]
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["label"].item() == 1 and item["label"].dtype == torch.int64 and item["mask"].shape == (1, 32, 32)
    np.testing.assert_array_equal(ds.class_counts(), [1, 3, 1])
    assert ds.has_masks and len(ds) == 5


def test_without_masks_and_with_augmentation():
    ds = ClassificationDataset.from_arrays(_images(), [0, 1, 2, 1, 1], Preprocessing(image_size=32), NAMES,
                                           transform=ultrasound_augmentation(32, seed=0))
    item = ds[0]
    assert "mask" not in item and item["image"].shape == (1, 32, 32)
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    plain = ds.with_transform(None)
    assert plain.images is ds.images  # no copy
    torch.testing.assert_close(plain[2]["image"], Preprocessing(image_size=32).to_tensor(ds.images[2]))
    sub = ds.subset([4, 0])
    assert sub.names == ["4", "0"] and list(sub.labels) == [1, 0]


def test_source_size_resizes_twice():
    im = _images(1, 60, 60)[0]
    prep = Preprocessing(image_size=32)
    direct = resize_for_network(im, prep)
    via = resize_for_network(im, prep, source_size=28)
    assert direct.shape == via.shape == (32, 32) and not np.array_equal(direct, via)


def test_source_crop_cuts_the_central_square_first():
    prep = Preprocessing(image_size=32)
    im = np.zeros((40, 70), np.uint8)
    im[:, 15:55] = 200  # the central 40 x 40 square is uniform: the crop leaves no dark border
    cropped = resize_for_network(im, prep, source_size=28, source_crop="central_square")
    assert cropped.shape == (32, 32) and (cropped == 200).all()
    assert (resize_for_network(im, prep, source_size=28)[:, 0] < 200).all()  # without the crop the dark sides stay
    square = _images(1, 28, 28)[0]
    np.testing.assert_array_equal(resize_for_network(square, prep, 28, "central_square"),
                                  resize_for_network(square, prep, 28))  # a square image: nothing cut
    with pytest.raises(ValueError, match="source_crop"):
        resize_for_network(im, prep, source_crop="centre")


def test_bad_inputs_are_named():
    prep = Preprocessing(image_size=16)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        ClassificationDataset(np.zeros((2, 16, 16), np.uint8), [0, 3], prep, NAMES)
    with pytest.raises(ValueError, match="images must be uint8 of shape"):
        ClassificationDataset(np.zeros((2, 8, 8), np.uint8), [0, 1], prep, NAMES)
    with pytest.raises(ValueError, match="b: image of size \\(34, 47\\) but mask of size"):
        ClassificationDataset.from_arrays(_images(2), [0, 1], prep, NAMES, masks=[np.zeros((33, 47)), np.zeros((3, 3))],
                                          names=["a", "b"])


def test_class_weights_golden():
    w = class_weights([0, 1, 1, 1, 2, 2], 3)
    # n / (K * n_k) = 6 / (3 * [1, 3, 2])
    torch.testing.assert_close(w, torch.tensor([2.0, 2.0 / 3.0, 1.0]))
    torch.testing.assert_close(class_weights([0, 0, 2], 3), torch.tensor([0.5, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        class_weights([0, 2], 2)


def test_balanced_sampler_draws_classes_evenly():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = balanced_sampler(labels, 2, generator=torch.Generator().manual_seed(0), num_samples=4000)
    drawn = labels[list(sampler)]
    assert abs(drawn.mean() - 0.5) < 0.05
    again = balanced_sampler(labels, 2, generator=torch.Generator().manual_seed(0), num_samples=4000)
    assert list(again) == list(balanced_sampler(labels, 2, generator=torch.Generator().manual_seed(0),
                                                num_samples=4000))


def test_from_busi_real(tmp_path):
    import os
    from pathlib import Path

    root = os.environ.get("BREASTDX_DATA")
    if not root or not (Path(root) / "busi").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    from breastdx.data.busi import load_busi

    cases = [c for c in load_busi(root) if c.name in ("benign (1)", "malignant (1)", "normal (1)")]
    ds = ClassificationDataset.from_busi(cases, Preprocessing(image_size=48))
    assert sorted(ds.labels.tolist()) == [0, 1, 2] and ds.masks.shape == (3, 48, 48)
    assert ds.masks[ds.labels == 0].sum() == 0 and ds.masks[ds.labels == 2].sum() > 0
