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
from breastdx.data.array_images import TRUNCATED_HDF5_HINT, ArrayInputError, expand_array_file
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
    with pytest.raises(ArrayInputError, match="no split 'val'; it has train, test"):
        expand_array_file(f"{path}#val")
    for fragment in ("test_labels", "test_images[-1]", ""):  # "no such file" before: the path was taken whole
        with pytest.raises(ArrayInputError, match=rf"after '#' expected a split \(train, val, test\) or one image, "
                                                rf"as tiny.npz#test_images\[000017\]; got '{re.escape(fragment)}'"):
            expand_array_file(f"{path}#{fragment}")
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
    overlays = sorted(p.name for p in (tmp_path / "p" / "gradcam").glob("*.png"))
    assert len(overlays) == 156  # one overlay per image, none overwritten, each named by its index
    assert overlays[17].startswith("breastmnist_test_images_000017")
    with np.load(npz) as z:
        y = z["test_labels"].ravel()  # MedMNIST: 0 = malignant, 1 = normal or benign
    from breastdx.zoo import shipped_models

    meta = json.loads((shipped_models()["breastmnist"] / "meta.json").read_text())
    p = np.array([float(r["p_malignant"]) for r in rows])
    # the shipped model's test AUROC, recomputed from predictions of the npz's own images
    assert float(auroc(y == 0, p)) == pytest.approx(meta["metrics"]["auroc"]["value"], abs=2e-3)


def _pcam_h5(path: Path, patches: np.ndarray) -> Path:
    import h5py

    with h5py.File(path, "w") as f:  # PatchCamelyon's layout: one dataset 'x', uint8 (N, 96, 96, 3), gzip chunks
        f.create_dataset("x", data=patches, chunks=(1, 96, 96, 3), compression="gzip")
    return path


def test_a_pcam_h5_gives_one_item_per_patch(tmp_path):
    import h5py

    patches = np.random.default_rng(1).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    x = _pcam_h5(tmp_path / "camelyonpatch_level_2_split_test_x.h5", patches)
    items = list_images([x])
    assert [str(p) for p in items] == [f"{x}#x[{i:06d}]" for i in range(3)]
    assert list_images([f"{x}#x"]) == items
    rec = read_image(items[2], mode="rgb")
    np.testing.assert_array_equal(rec.array, patches[2])
    assert rec.source_format == "HDF5" and rec.source_mode == "RGB"
    with pytest.raises(ImageReadError, match="past the 3 images of x"):
        read_image(f"{x}#x[000003]")
    with pytest.raises(ArrayInputError, match="no image dataset 'y'; it has x"):
        expand_array_file(f"{x}#y")
    with pytest.raises(ArrayInputError, match=r"after '#' expected a dataset, as x or one image"):
        expand_array_file(f"{x}#x[-1]")
    y = tmp_path / "camelyonpatch_level_2_split_test_y.h5"
    with h5py.File(y, "w") as f:
        f.create_dataset("y", data=np.zeros((3, 1, 1, 1), np.uint8))
    with pytest.raises(ImageReadError, match="the '_y.h5' file holds labels"):
        read_image(y)


def test_array_files_in_a_folder_are_expanded_and_a_labels_file_named(tmp_path, caplog):
    import h5py

    folder = tmp_path / "pcam"
    folder.mkdir()
    patches = np.random.default_rng(2).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    x = _pcam_h5(folder / "camelyonpatch_level_2_split_valid_x.h5", patches)
    with h5py.File(folder / "camelyonpatch_level_2_split_valid_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((2, 1, 1, 1), np.uint8))
    with caplog.at_level("WARNING"):
        items = list_images([folder])
    assert [str(p) for p in items] == [f"{x}#x[{i:06d}]" for i in range(2)]
    said = [r.getMessage() for r in caplog.records if "were not read" in r.getMessage()]
    assert len(said) == 1 and "camelyonpatch_level_2_split_valid_y.h5" in said[0]


def test_predict_pcam_reads_an_h5_as_it_reads_the_patch_files(tmp_path):
    """The same real PCam test patches, as JPEG files and as an HDF5 file of their pixels: the same predictions."""
    env = os.environ.get("BREASTDX_DATA")
    folder = Path(env or "") / "pcam_subset" / "test" / "1"
    if not env or not folder.is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    from PIL import Image

    files = sorted(folder.glob("*.jpg"))[:6]
    x = _pcam_h5(tmp_path / "patches_x.h5", np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
    runner = CliRunner()
    for name, inputs in (("files", [str(f) for f in files]), ("h5", [str(x)])):
        result = runner.invoke(app, ["predict", "pcam", *inputs, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    probabilities = {}
    for name in ("files", "h5"):
        with open(tmp_path / name / "predictions.csv", newline="") as f:
            probabilities[name] = [float(r["p_tumour"]) for r in csv.DictReader(f)]
    assert len(probabilities["h5"]) == 6 and probabilities["h5"] == probabilities["files"]
    scope = {}
    for name in ("files", "h5"):  # the scope check sees the same colours: an .h5 skipped it
        with open(tmp_path / name / "predictions.csv", newline="") as f:
            scope[name] = [r["in_scope"] for r in csv.DictReader(f)]
    assert scope["h5"] == scope["files"] and "true" in scope["h5"]
    grey = _pcam_h5(tmp_path / "grey_x.h5", np.repeat(np.stack([np.asarray(Image.open(f).convert("L"))
                                                                for f in files[:2]])[..., None], 3, axis=-1))
    result = runner.invoke(app, ["predict", "pcam", str(grey), "--out", str(tmp_path / "grey")])
    with open(tmp_path / "grey" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["in_scope"] for r in rows] == ["false"] * 2 and "grey" in rows[0]["scope_note"]
    explained = runner.invoke(app, ["explain", "pcam", f"{x}#x", "--out", str(tmp_path / "explain")])
    assert explained.exit_code == 0, explained.output
    names = sorted(p.name for p in (tmp_path / "explain" / "explanations").glob("*gradcam_*.png"))
    assert [n.split("_gradcam_")[0] for n in names] == [f"patches_x_x_{i:06d}" for i in range(6)]


def test_a_gzipped_or_truncated_h5_input_says_which_and_what_to_do(tmp_path):
    """Both were 'not a readable HDF5 file (Unable to synchronously open file (file signature not found))' and no
    more: nothing said that the file was PatchCamelyon's .h5.gz download under an .h5 name, or cut short."""
    import gzip

    import h5py

    patches = np.random.default_rng(3).integers(0, 256, (20, 96, 96, 3), dtype=np.uint8)
    plain = _pcam_h5(tmp_path / "plain_x.h5", patches)
    gz = tmp_path / "camelyonpatch_level_2_split_test_x.h5"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(ArrayInputError, match=rf"^{gz}: not a readable HDF5 file \(.*\)\. It is gzip-compressed "
                                              rf"\(PatchCamelyon publishes its files as \.h5\.gz\): decompress it first"):
        expand_array_file(gz)
    cut = tmp_path / "cut_x.h5"
    cut.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    with pytest.raises(ArrayInputError, match=rf"^{cut}: not a readable HDF5 file \(.*truncated.*\)\. It is shorter "
                                              rf"than its header says") as err:
        expand_array_file(cut)
    assert str(err.value).endswith(f" {TRUNCATED_HDF5_HINT}")  # the one advice, as pcam's reader gives it
    y = tmp_path / "labels_y.h5"
    with h5py.File(y, "w") as f:
        f.create_dataset("y", data=np.zeros((3, 1, 1, 1), np.uint8))
    with pytest.raises(ArrayInputError, match=r"no image dataset \(uint8, N x H x W or N x H x W x 3\)"):
        expand_array_file(y)  # said '[x 3]', which the command line's rich markup printed as ''


def test_an_array_image_over_max_pixels_is_refused_from_its_shape(tmp_path):
    """An array item is held to ``max_pixels`` as a file is: from the array's shape, before the patch is read (a
    small .h5 of fill-value chunks can hold gigabytes of pixels)."""
    import h5py

    path = tmp_path / "big_x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=(2, 300, 200), dtype=np.uint8, chunks=(1, 100, 100), compression="gzip")
    item = f"{path}#x[000001]"
    with pytest.raises(ImageReadError) as err:
        read_image(item, max_pixels=59_999)
    assert str(err.value) == f"{item}: image is 200x300 = 60,000 pixels, over the limit of 59,999; refusing to read it."
    assert read_image(item, max_pixels=60_000).array.shape == (300, 200)
