"""BreastMNIST .npz reader: keys, shapes, dtypes, label values and encodings, checksums, download by file:// URL."""

import dataclasses
import hashlib

import numpy as np
import pytest

from breastdx.data.breastmnist import (CLASS_NAMES, find_breastmnist, load_breastmnist,
                                       medmnist_to_malignant_positive, read_breastmnist)
from breastdx.data.download import DATASETS, DownloadError
from breastdx.data.errors import DataError


def _arrays(n=(5, 3, 4), size=28, column=True, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, k in zip(("train", "val", "test"), n):
        out[f"{split}_images"] = rng.integers(0, 256, (k, size, size), dtype=np.uint8)
        labels = rng.integers(0, 2, k)
        out[f"{split}_labels"] = labels.reshape(-1, 1) if column else labels
    return out


def _write(path, **arrays):
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("column", [True, False])
def test_labels_n_or_n1_and_malignant_is_positive(tmp_path, column):
    arrays = _arrays(column=column)
    data = read_breastmnist(_write(tmp_path / "b.npz", **arrays))
    for split in ("train", "val", "test"):
        stored = arrays[f"{split}_labels"].reshape(-1)
        s = data.split(split)
        assert s.labels.shape == (stored.size,) and s.labels.dtype == np.int64
        np.testing.assert_array_equal(s.medmnist_labels, stored)
        np.testing.assert_array_equal(s.labels, 1 - stored)  # MedMNIST 0 = malignant -> breastdx 1
        np.testing.assert_array_equal(s.images, arrays[f"{split}_images"])
    assert CLASS_NAMES[1] == "malignant"
    assert data.md5 == hashlib.md5((tmp_path / "b.npz").read_bytes()).hexdigest()
    assert data.official is False and len(data.sha256) == 64
    assert data.summary()["train"]["n"] == 5


def test_conversion_golden_values():
    np.testing.assert_array_equal(medmnist_to_malignant_positive(np.array([[0], [1], [1]])), [1, 0, 0])
    with pytest.raises(ValueError, match="0 \\(malignant\\) or 1"):
        medmnist_to_malignant_positive(np.array([0, 2]))
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, 1\)"):
        medmnist_to_malignant_positive(np.zeros((2, 2), int))


def test_every_problem_is_listed(tmp_path):
    arrays = _arrays()
    del arrays["val_labels"]
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    arrays["test_labels"] = np.array([0, 1, 2, 1])
    with pytest.raises(DataError) as err:
        read_breastmnist(_write(tmp_path / "bad.npz", **arrays))
    text = str(err.value)
    assert "bad.npz" in text and "missing array 'val_labels'" in text
    assert "train_images: expected uint8 of shape (N, H, W), got float32" in text
    assert "test_labels: expected 0 (malignant) or 1 (normal, benign), found [2]" in text


def test_count_and_shape_mismatches(tmp_path):
    arrays = _arrays()
    arrays["val_labels"] = np.zeros((2, 1), int)
    arrays["test_labels"] = np.zeros((4, 2), int)
    with pytest.raises(DataError) as err:
        read_breastmnist(_write(tmp_path / "b.npz", **arrays))
    assert "val: 3 images but 2 labels" in str(err.value)
    assert "test_labels: expected shape (N,) or (N, 1), got (4, 2)" in str(err.value)
    arrays = _arrays()
    arrays["test_images"] = np.zeros((4, 32, 32), np.uint8)
    with pytest.raises(DataError, match="different image sizes"):
        read_breastmnist(_write(tmp_path / "c.npz", **arrays))


def test_not_an_npz_and_pickles_refused(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_text("hello")
    with pytest.raises(DataError, match="x.npz: not a NumPy .npz archive"):
        read_breastmnist(bad)
    with pytest.raises(DataError, match="no such BreastMNIST file"):
        read_breastmnist(tmp_path / "missing.npz")
    arrays = _arrays()
    arrays["train_labels"] = np.array([0, 1, 0, 1, 0], dtype=object)
    with pytest.raises(DataError, match="without unpickling"):
        read_breastmnist(_write(tmp_path / "obj.npz", **arrays))


def test_find_breastmnist(tmp_path):
    with pytest.raises(DataError, match="breastdx data download breastmnist"):
        find_breastmnist(tmp_path)
    (tmp_path / "breastmnist").mkdir()
    f = _write(tmp_path / "breastmnist" / "breastmnist.npz", **_arrays())
    assert find_breastmnist(tmp_path) == f and find_breastmnist(f) == f
    assert load_breastmnist(tmp_path).test.n == 4


def test_download_by_file_url(tmp_path, monkeypatch):
    """The registered MD5 is checked; with the MD5 of a local file, download + read succeeds."""
    from breastdx.data.breastmnist import download_breastmnist

    src = _write(tmp_path / "breastmnist.npz", **_arrays())
    with pytest.raises(DownloadError, match="MD5 checksum mismatch: expected 750601b1f35ba3300ea97c75c52ff8f6"):
        download_breastmnist(tmp_path / "root", url=src.as_uri())
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    spec = dataclasses.replace(DATASETS.get("breastmnist"), archive_md5=md5)
    monkeypatch.setitem(DATASETS._entries, "breastmnist", spec)
    data = download_breastmnist(tmp_path / "root", url=src.as_uri())
    assert data.path == tmp_path / "root" / "breastmnist" / "breastmnist.npz" and data.train.n == 5
    with pytest.raises(DownloadError, match="already exists"):
        download_breastmnist(tmp_path / "root", url=src.as_uri())


def test_real_file(data_root):
    f = data_root / "breastmnist" / "breastmnist.npz"
    if not f.is_file():
        pytest.skip(f"real data not available: {f} does not exist")
    data = read_breastmnist(f)
    s = data.summary()
    assert {k: v["n"] for k, v in s.items()} == {"train": 546, "val": 78, "test": 156}
    assert [s[k]["malignant"] for k in ("train", "val", "test")] == [147, 21, 42]
    assert data.train.images.shape[1:] == (28, 28) and data.train.images.dtype == np.uint8
