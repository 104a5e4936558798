"""Data summary: hand-computed figures on tiny synthetic images, duplicates, sampling, unreadable items, gray
images, the written files, and a small run on the real PCam subset."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.patches import ArrayPatchSource, FilePatchSource
from breastdx.data.summary import (
    image_figures,
    laplacian_variance,
    mean_saturation,
    near_duplicate_groups,
    summarize,
)


def _jpeg(image: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _textured(seed: int, shape=(33, 35)) -> np.ndarray:
    """A smooth random RGB texture (so that a JPEG copy stays a near-duplicate)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(shape[::-1], Image.BICUBIC))


# ----------------------------------------------------------------------------------------------------
# Per-image figures (golden values)


def test_laplacian_variance_golden():
    assert laplacian_variance(np.full((7, 9), 120, np.uint8)) == 0.0
    spot = np.zeros((5, 5), np.uint8)
    spot[2, 2] = 1  # Laplacian: -4 at the spot, +1 at its 4 neighbours, 0 elsewhere -> var = (16 + 4) / 25
    assert laplacian_variance(spot) == pytest.approx(0.8)
    rgb = np.stack([spot * 10] * 3, axis=-1)  # gray = 10 at the spot (luma weights sum to 1)
    assert laplacian_variance(rgb) == pytest.approx(80.0)


def test_saturation_and_brightness_golden():
    red = np.zeros((3, 4, 3), np.uint8)
    red[..., 0] = 255
    fig = image_figures(red)
    assert fig["saturation"] == pytest.approx(1.0)
    assert fig["brightness"] == pytest.approx(0.299 * 255)
    assert fig["channel_mean"] == pytest.approx([255, 0, 0]) and fig["channel_std"] == pytest.approx([0, 0, 0])
    assert mean_saturation(np.full((2, 2, 3), [200, 100, 100], np.uint8)) == pytest.approx(0.5)
    assert mean_saturation(np.full((2, 2, 3), 77, np.uint8)) == 0.0
    gray = image_figures(np.full((4, 6), 9, np.uint8))
    assert gray["channels"] == 1 and gray["saturation"] == 0.0 and gray["brightness"] == 9.0
    assert (gray["height"], gray["width"]) == (4, 6)


def test_near_duplicate_groups_block_by_block():
    hashes = [0b0, 0b1, 0b111, 0xFF << 40, (0xFF << 40) | 0b11, 0xFFFF]
    assert near_duplicate_groups(hashes, threshold=1, block=2) == [[0, 1]]
    assert near_duplicate_groups(hashes, threshold=2, block=2) == [[0, 1, 2], [3, 4]]  # 0-1-2 transitively
    thumbs = np.eye(6)
    assert near_duplicate_groups(hashes, threshold=2, thumbnails=thumbs) == []  # uncorrelated thumbnails
    with pytest.raises(ValueError, match="0-64"):
        near_duplicate_groups(hashes, threshold=65)


# ----------------------------------------------------------------------------------------------------
# summarize


def test_summary_of_a_small_synthetic_set(tmp_path):
    a, b, c = _textured(1), _textured(2), _textured(3)
    constant = np.full((33, 35, 3), 200, np.uint8)
    pairs = [(a, "tumour"), (a.copy(), "tumour"),            # exact duplicate, same class
             (b, "normal"), (b.copy(), "tumour"),            # exact duplicate across classes
             (c, "normal"), (_jpeg(c), "normal"),            # near duplicate (JPEG copy)
             (constant, "normal"), (_textured(4, (20, 21)), "tumour")]
    result = summarize(pairs, tmp_path / "out", class_names=("normal", "tumour"), name="synthetic")
    assert result["dataset"] == "synthetic" and result["n_items"] == 8 and result["n_analysed"] == 8
    assert result["class_counts"] == {"normal": 4, "tumour": 4}
    assert result["sizes"] == {"33x35x3": 7, "20x21x3": 1}
    ex = result["exact_duplicates"]
    assert ex["groups"] == 2 and ex["items_in_groups"] == 4 and ex["redundant_items"] == 2
    assert ex["groups_across_classes"] == 1 and ex["groups_within_class"] == {"normal": 0, "tumour": 1}
    assert ex["examples"] == [["0", "1"], ["2", "3"]]
    assert ex["conflict_examples"] == [["2 (normal)", "3 (tumour)"]]
    near = result["near_duplicates"]
    assert near["groups"] == 3 and ["4", "5"] in near["examples"]
    assert result["lowest_blur"][0] == {"id": "6", "blur": 0.0}  # the constant image
    q = result["quality"]
    assert q["blur"]["all"]["min"] == 0.0 and q["brightness"]["all"]["max"] == pytest.approx(200.0)
    assert q["saturation"]["normal"]["n"] == 4 and q["saturation"]["normal"]["min"] == 0.0
    files = set(result["files"])
    assert {"summary.json", "report.html", "class_distribution.png", "quality_per_class.png",
            "samples_per_class.png"} <= files
    for f in files:
        assert (tmp_path / "out" / f).is_file()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["exact_duplicates"]["groups"] == 2
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Research use only" in html and "samples_per_class.png" in html


def test_summary_pooled_colour_statistics(tmp_path):
    images = np.zeros((2, 2, 2, 3), np.uint8)
    images[0] = [10, 20, 30]
    images[1] = [30, 20, 10]
    result = summarize(ArrayPatchSource(images, [0, 1]), tmp_path)
    assert result["colour"]["all"]["mean"] == pytest.approx([20, 20, 20])
    assert result["colour"]["all"]["std"] == pytest.approx([10, 0, 10])
    assert result["colour"]["normal"]["mean"] == pytest.approx([10, 20, 30])


def test_summary_samples_large_sets_but_counts_every_item(tmp_path):
    rng = np.random.default_rng(0)
    src = ArrayPatchSource(rng.integers(0, 256, (40, 9, 11, 3), dtype=np.uint8), [0] * 30 + [1] * 10)
    result = summarize(src, tmp_path, max_items=12, seed=4)
    assert result["sampled"] and result["n_analysed"] == 12
    assert result["class_counts"] == {"normal": 30, "tumour": 10}
    assert sum(result["class_counts_analysed"].values()) == 12
    again = summarize(src, tmp_path / "again", max_items=12, seed=4)
    assert again["quality"] == result["quality"]


def test_pairs_of_readers_are_read_only_when_analysed(tmp_path):
    """``(reader, label)`` pairs (BUSI's cases): every item counted, only the sampled ones read, a failing reader
    listed."""
    from breastdx.data.errors import DataError

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 12, 10), dtype=np.uint8)
    read = []

    def reader(i):
        def call():
            read.append(i)
            if i == 3:
                raise DataError("case 3: broken file")
            return images[i]
        return call

    pairs = [(reader(i), "b" if i % 3 else "a") for i in range(30)]
    result = summarize(pairs, tmp_path, max_items=30, seed=0, class_names=("a", "b"))
    assert result["class_counts"] == {"a": 10, "b": 20} and result["n_analysed"] == 29
    assert [f["reason"] for f in result["failures"]] == ["case 3: broken file"]
    read.clear()
    small = summarize(pairs, tmp_path / "small", max_items=8, seed=0, class_names=("a", "b"))
    assert small["class_counts"] == {"a": 10, "b": 20} and small["n_analysed"] + len(small["failures"]) == 8
    assert 8 <= len(set(read)) < 30  # the sample (and the grid's picks among it), not every item


def test_unreadable_items_are_listed_not_fatal(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    paths = []
    for k in range(3):
        p = data / f"p{k}.png"
        Image.fromarray(_textured(k)).save(p)
        paths.append(p)
    paths[1].write_bytes(paths[1].read_bytes()[:60])  # truncated PNG
    result = summarize(FilePatchSource(data, paths, [0, 1, 1]), tmp_path / "out")
    assert result["n_analysed"] == 2
    assert [f["id"] for f in result["failures"]] == ["p1.png"]
    assert "p1.png" in result["failures"][0]["reason"]
    assert "could not be read" in (tmp_path / "out" / "report.html").read_text()


def test_gray_ultrasound_like_images(tmp_path):
    rng = np.random.default_rng(5)
    pairs = [(rng.integers(0, 256, (30 + k, 40), dtype=np.uint8), ["normal", "benign", "malignant"][k % 3])
             for k in range(6)]
    result = summarize(pairs, tmp_path, class_names=("normal", "benign", "malignant"))
    assert result["class_counts"] == {"normal": 2, "benign": 2, "malignant": 2}
    assert result["quality"]["saturation"]["all"]["max"] == 0.0
    assert len(result["colour"]["all"]["mean"]) == 1
    assert all(s.endswith("x1") for s in result["sizes"])


def test_summary_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="not in class_names"):
        summarize([(np.zeros((2, 2), np.uint8), "x")], tmp_path, class_names=("a",))
    with pytest.raises(ValueError, match="max_items"):
        summarize([(np.zeros((2, 2), np.uint8), 0)], tmp_path, max_items=0)
    from breastdx.data.summary_datasets import summarize_dataset

    # summarised whole: a --max-items given for them was ignored in silence
    for name, what in (("wdbc", "every case"), ("monuseg", "every tile")):
        with pytest.raises(ValueError, match=rf"--max-items is for the image datasets; {name} is summarised whole "
                                             rf"\({what}\)"):
            summarize_dataset(name, tmp_path, tmp_path / name, max_items=10)


def test_summary_on_real_pcam_sample(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "pcam_subset").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    from breastdx.data.pcam import load_pcam

    result = summarize(load_pcam(env, "valid"), tmp_path, max_items=200)
    assert result["n_items"] == 3000 and result["class_counts"] == {"normal": 1500, "tumour": 1500}
    assert result["sizes"] == {"96x96x3": 200} and result["failures"] == []
    assert 0 < result["quality"]["saturation"]["all"]["mean"] < 1
    red, green, blue = result["colour"]["all"]["mean"]
    assert red > green and blue > green  # H&E: pink and purple


def test_many_image_sizes_are_reported_as_a_range(tmp_path):
    """Hundreds of distinct sizes (as in BUSI) give their range and the commonest, not a table of every size."""
    from breastdx.data.summary import MAX_SIZES_LISTED

    rng = np.random.default_rng(2)
    pairs = [(rng.integers(0, 256, (20 + k, 30 + 2 * k), dtype=np.uint8), ["a", "b"][k % 2]) for k in range(14)]
    result = summarize(pairs, tmp_path, class_names=("a", "b"))
    assert len(result["sizes"]) == 14
    assert result["size_range"] == {"height": [20, 26.5, 33], "width": [30, 43.0, 56], "channels": [1]}
    html = (tmp_path / "report.html").read_text()
    assert "14 distinct sizes: height 20-33 px (median 26.5), width 30-56 px (median 43)" in html
    assert html.count("x1</td>") == MAX_SIZES_LISTED


def test_summary_of_real_breastmnist_by_name(tmp_path):
    """``breastdx data summary breastmnist``: every official image, the counts per split, one split alone; a name
    without a summary lists those that have one."""
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "breastmnist").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    from breastdx.data.summary_datasets import summarize_dataset
    from breastdx.registry import UnknownNameError

    result = summarize_dataset("breastmnist", env, tmp_path / "all")
    assert result["n_items"] == 780 and result["class_counts"] == {"normal_or_benign": 570, "malignant": 210}
    assert result["sizes"] == {"28x28x1": 780}
    assert result["splits"]["test"] == {"n": 156, "normal_or_benign": 114, "malignant": 42}
    assert result["splits"]["train"]["n"] == 546 and result["splits"]["val"]["n"] == 78
    assert (tmp_path / "all" / "report.html").is_file()
    test = summarize_dataset("breastmnist", env, tmp_path / "test", split="test")
    assert test["n_items"] == 156 and test["class_counts"]["malignant"] == 42
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        summarize_dataset("breastmnist", env, tmp_path / "x", split="valid")
    with pytest.raises(UnknownNameError, match="Choices: breakhis, breastmnist, busi, idc, monuseg, pcam"):
        summarize_dataset("pannuke", env, tmp_path / "y")


def test_busi_summary_counts_every_case_and_reads_the_sample(tmp_path):
    """``--max-items`` samples the images analysed; the class counts are still those of all 780 BUSI cases."""
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "busi").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    from breastdx.data.summary_datasets import summarize_dataset

    result = summarize_dataset("busi", env, tmp_path, max_items=20)
    assert result["n_items"] == 780 and result["n_analysed"] == 20
    assert result["class_counts"] == {"normal": 133, "benign": 437, "malignant": 210}
    assert sum(result["class_counts_analysed"].values()) == 20
    blurred = result["lowest_blur"]  # items are named by their case, not by their index among the 780
    assert blurred and all(b["id"].split(" (")[0] in ("normal", "benign", "malignant") for b in blurred), blurred


def test_gray_and_rgb_images_of_a_class_are_all_in_its_colour(tmp_path):
    """A class whose first image was gray kept only its gray images in the colour figures, and an RGB class beside a
    gray one was left out of 'all', without a word: a gray pixel v now counts as (v, v, v)."""
    gray = np.full((5, 7), 100, np.uint8)
    rgb = np.zeros((5, 7, 3), np.uint8) + np.array([10, 20, 30], np.uint8)
    result = summarize([(gray, 0), (rgb, 0), (rgb, 1)], tmp_path, class_names=("normal", "tumour"))
    assert result["colour"]["normal"]["mean"] == pytest.approx([55, 60, 65])
    assert result["colour"]["normal"]["std"] == pytest.approx([45, 40, 35])
    assert result["colour"]["tumour"]["mean"] == pytest.approx([10, 20, 30])
    assert result["colour"]["all"]["mean"] == pytest.approx([40, 46.6666667, 53.3333333])
