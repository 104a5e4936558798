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
from breastdx.models.saved import ModelFolderError, read_training_hashes, write_training_hashes
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


def test_every_shipped_image_model_knows_its_training_images():
    for name, folder in shipped_models().items():
        if name == "wdbc":
            continue
        saved = json.loads((folder / "training_hashes.json").read_text())
        split = json.loads((folder / "split.json").read_text())
        n_train = len(split["train"]) if "train" in split else split["summary"]["train"]["n"]  # MedMNIST: counts
        assert saved["n_images"] == n_train, name


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
