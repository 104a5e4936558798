"""Model folders keep their training images' hashes, and predict flags an input the model was trained on
(issue 13: "predicting an image the model was trained on gives no warning")."""

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.data.checksum import image_hash
from breastdx.data.duplicates import FLAG_HASH_THRESHOLD, NearDuplicateIndex, model_view_hash
from breastdx.data.transforms import central_square, resize_uint8
from breastdx.models.saved import (ModelFolderError, read_near_duplicate_index, read_training_hashes,
                                   write_training_hashes)
from breastdx.zoo import shipped_models


def test_the_hash_is_sha256_of_dtype_shape_and_pixels_and_round_trips(tmp_path):
    image = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    assert image_hash(image) == hashlib.sha256(b"|u1(2, 2)" + bytes([0, 1, 2, 255])).hexdigest()[:32]
    assert image_hash(image) != image_hash(image.T) and image_hash(image) != image_hash(image.reshape(1, 4))
    write_training_hashes(tmp_path, [image_hash(image), image_hash(image), "b" * 32])
    saved = json.loads((tmp_path / "training_hashes.json").read_text())
    assert saved["n_images"] == 3 and len(saved["hashes"]) == 2  # unique, but the count of images read
    assert read_training_hashes(tmp_path) == {image_hash(image), "b" * 32}
    assert read_training_hashes(tmp_path / "nowhere") == frozenset() and read_training_hashes(None) == frozenset()
    (tmp_path / "training_hashes.json").write_text("[1, 2]")
    with pytest.raises(ModelFolderError, match="training_hashes.json: not a training-hashes file"):
        read_training_hashes(tmp_path)


def _scan(seed, shape=(120, 160)):
    """A smooth synthetic 'scan': blobs on a gradient, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = 40.0 + 60.0 * yy / shape[0]
    for _ in range(4):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(8, 30)
        image += rng.uniform(-60, 90) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_the_perceptual_record_round_trips_and_flags_copies_not_other_images(tmp_path):
    train = [_scan(s) for s in range(5)]
    write_training_hashes(tmp_path, [image_hash(im) for im in train], [model_view_hash(im) for im in train])
    saved = json.loads((tmp_path / "training_hashes.json").read_text())["perceptual"]
    assert saved["threshold"] == FLAG_HASH_THRESHOLD == 8 and saved["source_crop"] is None
    assert all(len(h) == 16 for h in saved["hashes"]) and len(saved["hashes"]) == 5
    index = read_near_duplicate_index(tmp_path)
    assert isinstance(index, NearDuplicateIndex) and index.distance(train[2]) == 0
    noisy = np.clip(train[2] + np.random.default_rng(9).normal(0, 3, train[2].shape), 0, 255).astype(np.uint8)
    recropped = train[3][4:-4, 5:-5]  # a re-cropped screenshot
    assert image_hash(noisy) != image_hash(train[2]) and index.is_near(noisy) and index.is_near(recropped)
    assert not index.is_near(_scan(99)) and index.distance(_scan(99)) > 8
    assert read_near_duplicate_index(tmp_path / "nowhere") is None
    write_training_hashes(tmp_path, ["a" * 32])  # without perceptual hashes: no index
    assert read_near_duplicate_index(tmp_path) is None
    (tmp_path / "training_hashes.json").write_text('{"hashes": [], "perceptual": {"hashes": ["zz"]}}')
    with pytest.raises(ModelFolderError, match="not a perceptual-hash record"):
        read_near_duplicate_index(tmp_path)


def test_a_model_that_cuts_the_central_square_knows_its_source_images():
    """BreastMNIST's images are the central squares of BUSI images at 28 x 28: a full image matches its thumbnail
    through the crop, and not without it (golden distances of this synthetic pair)."""
    full = _scan(3, shape=(150, 260))
    thumb = resize_uint8(central_square(full), 28)
    index = NearDuplicateIndex(np.array([model_view_hash(thumb, "central_square")], dtype=np.uint64),
                               source_crop="central_square")
    assert index.is_near(full)
    assert NearDuplicateIndex(index.hashes).distance(full) > 8
    with pytest.raises(ValueError, match="source_crop must be None or 'central_square'"):
        model_view_hash(full, "centre")


def test_every_shipped_image_model_knows_its_training_images():
    for name, folder in shipped_models().items():
        if name == "wdbc":
            continue
        saved = json.loads((folder / "training_hashes.json").read_text())
        split = json.loads((folder / "split.json").read_text())
        n_train = len(split["train"]) if "train" in split else split["summary"]["train"]["n"]  # MedMNIST: counts
        assert saved["n_images"] == n_train, name
        if name in ("busi-seg", "busi-cls", "breastmnist", "breastmnist-single"):  # near-duplicates too
            crop = "central_square" if name.startswith("breastmnist") else None
            assert saved["perceptual"]["source_crop"] == crop and saved["perceptual"]["threshold"] == 8, name
            assert len(saved["perceptual"]["hashes"]) == (525 if crop else 496), name  # distinct, golden


def test_predict_flags_a_training_image_and_not_a_test_image(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    busi = Path(env or "") / "busi" / "benign"
    if not env or not busi.is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    split = json.loads((shipped_models()["busi-cls"] / "split.json").read_text())
    train, test = split["train"][0], split["test"][0]  # "benign (1)", "benign (23)"
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["predict", "busi-cls", str(busi / f"{train}.png"), str(busi / f"{test}.png"),
                                      "--out", str(out), "--gradcam", "false"])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as f:
        rows = {Path(r["source"]).stem: r["seen_in_training"] for r in csv.DictReader(f)}
    assert rows == {train: "yes", test: "no"}
    assert "1 of 2 input image(s) are images this model was trained on" in " ".join(result.output.split())


def test_predict_flags_the_busi_file_of_a_breastmnist_training_image_and_not_another_site(tmp_path):
    """``benign (56).png`` is the BUSI source of BreastMNIST training image 1 (other pixels: the full image); the
    BrEaST sample's ``case186.png`` is within 10 bits of a BUSI training image of busi-cls, but another lesion at
    another hospital (thumbnail correlation 0.62), and stays unflagged at 8."""
    env = os.environ.get("BREASTDX_DATA")
    root = Path(env or "")
    if not env or not (root / "busi").is_dir() or not (root / "breast_lesions_usg_sample").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    busi = root / "busi" / "benign" / "benign (56).png"
    other = next((root / "breast_lesions_usg_sample").rglob("case186.png"))
    out = tmp_path / "bm"
    result = CliRunner().invoke(app, ["predict", "breastmnist", str(busi), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as f:
        rows = {Path(r["source"]).stem: r["seen_in_training"] for r in csv.DictReader(f)}
    assert rows == {"benign (56)": "near-duplicate", "case186": "no"}
    assert "1 of 2 input image(s) are near-duplicates of images this model was trained on" in " ".join(
        result.output.split())
    out = tmp_path / "cls"
    result = CliRunner().invoke(app, ["predict", "busi-cls", str(other), "--out", str(out), "--gradcam", "false"])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as f:
        assert next(csv.DictReader(f))["seen_in_training"] == "no"
