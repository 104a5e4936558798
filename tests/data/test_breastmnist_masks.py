"""BreastMNIST images matched to their BUSI sources, and the sources' lesion masks (breastdx.data.breastmnist_masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.breastmnist_masks import busi_lesion_masks, central_square, leaking_test_images, thumbnail
from breastdx.data.errors import DataError


def _busi(root: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A BUSI folder of five non-square images with masks; ``benign (2)`` and ``malignant (1)`` are one image."""
    rng = np.random.default_rng(seed)
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (h, w) in {"normal (1)": (60, 80), "benign (1)": (90, 70), "benign (2)": (64, 96),
                         "malignant (2)": (75, 75)}.items():
        image = (rng.random((h, w)) * 255).astype(np.uint8)
        mask = np.zeros((h, w), dtype=bool)
        if not name.startswith("normal"):
            mask[h // 3:h // 2, w // 4:w // 2] = True
        cases[name] = (image, mask)
    cases["malignant (1)"] = (cases["benign (2)"][0].copy(), np.flipud(cases["benign (2)"][1]).copy())
    for name, (image, mask) in cases.items():
        label = name.split(" (")[0]
        (root / "busi" / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "busi" / label / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "busi" / label / f"{name}_mask.png")
    return cases


def test_central_square_golden():
    a = np.arange(5 * 8).reshape(5, 8)
    assert central_square(a).shape == (5, 5)
    assert central_square(a)[0, 0] == 1  # (8 - 5) // 2 columns cut on the left
    assert central_square(a.T).shape == (5, 5) and central_square(a.T)[0, 0] == 1
    assert thumbnail(np.full((40, 30), 200, np.uint8)).shape == (28, 28)
    assert np.allclose(thumbnail(np.full((40, 30), 200, np.uint8)), 200)


def test_each_image_gets_its_source_mask_and_ties_follow_the_label(tmp_path):
    cases = _busi(tmp_path)
    order = ["malignant (2)", "benign (1)", "normal (1)", "benign (2)", "malignant (1)"]
    images = np.stack([np.round(thumbnail(cases[n][0])).astype(np.uint8) for n in order])
    malignant = np.array([1, 0, 0, 0, 1])
    masks, matches = busi_lesion_masks(images, malignant, tmp_path)
    assert [m.case for m in matches] == order  # the two identical images split by their labels
    assert all(m.r > 0.999 for m in matches)
    for name, mask in zip(order, masks):
        assert np.array_equal(mask, central_square(cases[name][1]))
    assert not masks[2].any() and masks[0].any()
    # the tie goes the other way when the labels say so
    _, swapped = busi_lesion_masks(images[3:], np.array([1, 0]), tmp_path)
    assert [m.case for m in swapped] == ["malignant (1)", "benign (2)"]


def test_an_image_without_source_is_named(tmp_path):
    cases = _busi(tmp_path)
    images = np.stack([np.round(thumbnail(cases["benign (1)"][0])).astype(np.uint8),
                       np.random.default_rng(9).integers(0, 255, (28, 28), dtype=np.uint8)])
    with pytest.raises(DataError, match=r"train_1: no BUSI image matches it") as e:
        busi_lesion_masks(images, np.array([0, 0]), tmp_path, ids=["train_0", "train_1"])
    assert len(e.value.problems) == 1


def test_real_breastmnist_images_match_their_busi_sources(data_root):
    """A slice of the real test split: golden sources, and the masks' sizes and areas."""
    from breastdx.data.breastmnist import load_breastmnist

    test = load_breastmnist(data_root).split("test")
    masks, matches = busi_lesion_masks(test.images[:4], test.labels[:4], data_root)
    assert [m.case for m in matches] == ["malignant (161)", "benign (355)", "benign (25)", "benign (420)"]
    assert min(m.r for m in matches) > 0.9998
    assert [m.shape for m in masks] == [(576, 576), (562, 562), (583, 583), (574, 574)]
    assert [int(m.sum()) for m in masks] == [95915, 53908, 5824, 55537]


class _Part:
    def __init__(self, images, labels):
        self.images, self.labels, self.n = np.asarray(images), np.asarray(labels), len(labels)


class _Data:
    def __init__(self, parts):
        self.parts = parts

    def split(self, name):
        return self.parts[name]


def test_a_test_image_leaks_through_its_near_duplicate_group(tmp_path):
    cases = _busi(tmp_path)
    thumb = {n: np.round(thumbnail(c[0])).astype(np.uint8) for n, c in cases.items()}
    data = _Data({"train": _Part([thumb["benign (1)"]], [0]), "val": _Part([thumb["malignant (1)"]], [1]),
                  "test": _Part([thumb["malignant (2)"], thumb["benign (2)"], thumb["normal (1)"]], [1, 0, 0])})
    # malignant (2) shares a group with a training image; benign (2) is the validation image filed under another
    # label (one picture, two BUSI cases, matched by label); normal (1) with nobody seen
    leak, counts = leaking_test_images(data, tmp_path, [["benign (1)", "malignant (2)"], ["benign (2)", "malignant (1)"]])
    assert leak.tolist() == [True, True, False]
    assert counts == {"test": 3, "leaking": 2, "leaking_malignant": 1, "clean": 1, "clean_malignant": 0,
                      "same_source_in_training": 0}
    # one BUSI image cannot be the source of two images (MedMNIST made one of each)
    twice = _Data({"train": _Part([thumb["normal (1)"]], [0]), "val": _Part([thumb["normal (1)"]], [0]),
                   "test": _Part([thumb["benign (1)"]], [0])})
    with pytest.raises(DataError, match=r"val_0: its BUSI source is already the source of another image"):
        leaking_test_images(twice, tmp_path, [])


def test_the_matching_is_one_source_per_image_not_the_best_each():
    """Two BUSI frames that differ a little (as ``benign (152)`` and ``benign (18)``): the image made from the second
    correlates a hair better with the first, whose own image correlates perfectly; each gets its own source."""
    from breastdx.data.breastmnist_masks import match_busi

    class Case:
        def __init__(self, name):
            self.name, self.label = name, "benign"

    rng = np.random.default_rng(3)
    a = rng.random((28, 28)) * 200 + 20
    e = rng.normal(0, 1.0, (28, 28))
    thumbs = np.stack([a, a + e, rng.random((28, 28)) * 255])
    images = np.stack([a, a + 0.45 * e])  # the second is nearer to a than to a + e, though made from a + e
    r_best = [int(np.argmax([np.corrcoef(im.ravel(), t.ravel())[0, 1] for t in thumbs])) for im in images]
    assert r_best == [0, 0]  # matching each image to its best source would use "A" twice
    matches = match_busi(images, np.array([0, 0]), thumbs, [Case("A"), Case("A2"), Case("B")])
    assert [m.case for m in matches] == ["A", "A2"] and min(m.r for m in matches) > 0.999


def test_real_breastmnist_test_images_with_a_frame_of_their_lesion_in_training(data_root):
    """Golden counts on the real file with the shipped busi-seg split's near-duplicate groups."""
    import json

    from breastdx.data.breastmnist import load_breastmnist

    groups = json.loads((Path(__file__).resolve().parents[2] / "src/breastdx/zoo/busi-seg/split.json").read_text())
    leak, counts = leaking_test_images(load_breastmnist(data_root), data_root, groups["groups"])
    assert counts == {"test": 156, "leaking": 64, "leaking_malignant": 10, "clean": 92, "clean_malignant": 32,
                      "same_source_in_training": 0}
    assert leak.shape == (156,) and np.flatnonzero(leak)[:8].tolist() == [2, 7, 8, 10, 12, 13, 18, 20]


def test_every_real_breastmnist_image_has_a_busi_source_of_its_own(data_root):
    """780 images, 780 BUSI images: the assignment uses each once; the near-identical frames go their own way
    (golden), and the one BUSI picture filed under two labels follows the BreastMNIST label."""
    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.data.breastmnist_masks import _busi_index, match_splits

    cases, thumbs, _ = _busi_index(data_root, masks=False)
    matches = match_splits(load_breastmnist(data_root), thumbs, cases)
    names = [m.case for ms in matches.values() for m in ms]
    assert len(names) == len(set(names)) == 780 and min(m.r for ms in matches.values() for m in ms) > 0.9991
    assert [matches["train"][i].case for i in (60, 107, 115, 488)] == [
        "benign (152)", "benign (18)", "malignant (145)", "benign (299)"]
    assert matches["val"][76].case == "benign (233)" and matches["test"][76].case == "benign (433)"
