"""MedMNIST .npz files as image inputs (issue 13: `breastdx predict breastmnist breastmnist.npz` said "not an image")."""

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.data.images import ImageReadError, read_image
from breastdx.data.image_files import list_images
from breastdx.data.npz_images import NpzInputError, expand_npz
from breastdx.evaluation.metrics import auroc


def _npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, train_images=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
             test_images=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), test_labels=np.array([[0], [1], [0]]))
    return path


def test_an_npz_gives_one_item_per_image_of_every_split_or_of_one(tmp_path):
    path = _npz(tmp_path)
    items = list_images([path])
    assert [str(p) for p in items] == [f"{path}#test_images[{i:06d}]" for i in range(3)] + \
        [f"{path}#train_images[{i:06d}]" for i in range(2)]  # sorted by name, as every input
    assert len(list_images([f"{path}#test"])) == 3
    with np.load(path) as z:
        expected = z["test_images"][2]
    rec = read_image(items[2])
    np.testing.assert_array_equal(rec.array, expected)
    assert rec.source_format == "NPZ" and rec.array.dtype == np.uint8
    assert read_image(items[2], mode="rgb").array.shape == (28, 28, 3)
    with pytest.raises(ImageReadError, match="past the 3 images"):
        read_image(f"{path}#test_images[000003]")
    with pytest.raises(NpzInputError, match="no split 'val'; it has train, test"):
        expand_npz(f"{path}#val")
    for fragment in ("test_labels", "test_images[-1]", ""):  # "no such file" before: the path was taken whole
        with pytest.raises(NpzInputError, match=rf"after '#' expected a split \(train, val, test\) or one image, "
                                                rf"as tiny.npz#test_images\[000017\]; got '{re.escape(fragment)}'"):
            expand_npz(f"{path}#{fragment}")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    assert list_images([tmp_path / "other.npz"]) == [tmp_path / "other.npz"]  # kept whole, reported when read
    with pytest.raises(ImageReadError, match="MedMNIST"):
        read_image(tmp_path / "other.npz")


def test_predict_the_real_breastmnist_test_split_from_its_npz(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    npz = Path(env or "") / "breastmnist" / "breastmnist.npz"
    if not env or not npz.is_file():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    result = CliRunner().invoke(app, ["predict", "breastmnist", f"{npz}#test", "--out", str(tmp_path / "p"),
                                      "--gradcam"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "p" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 156 and rows[0]["source"].endswith("#test_images[000000]")
    assert len(list((tmp_path / "p" / "gradcam").glob("*.png"))) == 156  # one overlay per image, none overwritten
    with np.load(npz) as z:
        y = z["test_labels"].ravel()  # MedMNIST: 0 = malignant, 1 = normal or benign
    from breastdx.zoo import shipped_models

    meta = json.loads((shipped_models()["breastmnist"] / "meta.json").read_text())
    p = np.array([float(r["p_malignant"]) for r in rows])
    # the shipped model's test AUROC, recomputed from predictions of the npz's own images
    assert float(auroc(y == 0, p)) == pytest.approx(meta["metrics"]["auroc"]["value"], abs=2e-3)
