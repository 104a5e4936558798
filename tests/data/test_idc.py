"""IDC readers on small files made in exactly the published formats (no copy of IDC is available here):
the Kaggle X.npy / Y.npy subset and the IDC_regular patient folders, plus finding them and splitting by patient."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from breastdx.data.errors import DataError
from breastdx.data.idc import find_idc, load_idc, parse_idc_name, patient_split, read_idc_folders, read_idc_npy
from breastdx.data.images import ImageReadError
from breastdx.data.patches import load_patch_dataset


def _kaggle_npy(folder, n=11, seed=0, y_dtype=np.int64):
    """X.npy (N, 50, 50, 3) uint8 and Y.npy (N,) int64, as in the Kaggle subset (5547 x 50 x 50 x 3)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 50, 50, 3), dtype=np.uint8)
    X[..., 0] = np.maximum(X[..., 0], X[..., 2])  # red-dominant, like H&E
    Y = (np.arange(n) % 3 == 0).astype(y_dtype)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X.npy", X)
    np.save(folder / "Y.npy", Y)
    return X, Y


def _idc_regular(root, spec, seed=0, size=(50, 50)):
    """``spec``: patient -> list of (class, x, y); files <patient>/<class>/<patient>_idx5_x<X>_y<Y>_class<C>.png."""
    rng = np.random.default_rng(seed)
    for patient, items in spec.items():
        for cls, x, y in items:
            d = root / patient / str(cls)
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=size + (3,), dtype=np.uint8)).save(
                d / f"{patient}_idx5_x{x}_y{y}_class{cls}.png")
    return root


# ----------------------------------------------------------------------------------------------------
# Kaggle X.npy / Y.npy


def test_npy_reader_reads_memory_mapped_rows(tmp_path):
    X, Y = _kaggle_npy(tmp_path, n=13)
    src = read_idc_npy(tmp_path / "X.npy", tmp_path / "Y.npy")
    assert isinstance(src._images, np.memmap)  # not read into memory
    assert len(src) == 13 and src.name == "idc" and src.groups is None
    np.testing.assert_array_equal(src.labels, Y)
    image, label = src.get(7)
    np.testing.assert_array_equal(image, X[7])
    assert label == int(Y[7]) and image.flags.writeable
    assert src.ids[7] == "X.npy#7"
    images, labels = src.get_many([3, 0])
    np.testing.assert_array_equal(images[0], X[3])
    first = src.checksum
    assert read_idc_npy(tmp_path / "X.npy", tmp_path / "Y.npy").checksum == first
    Y[0] = 1 - Y[0]
    np.save(tmp_path / "Y.npy", Y)
    assert read_idc_npy(tmp_path / "X.npy", tmp_path / "Y.npy").checksum != first


def test_npy_reader_accepts_column_labels(tmp_path):
    X, Y = _kaggle_npy(tmp_path, n=4, y_dtype=np.uint8)
    np.save(tmp_path / "Y.npy", Y.reshape(4, 1))
    assert read_idc_npy(tmp_path / "X.npy", tmp_path / "Y.npy").labels.tolist() == Y.tolist()


@pytest.mark.parametrize("what, match", [
    ("float", r"X.npy: array is float32 of shape \(4, 50, 50, 3\); expected uint8 of shape \(N, 50, 50, 3\)"),
    ("size", r"X.npy: array is uint8 of shape \(4, 48, 50, 3\); expected uint8"),
    ("length", r"Y.npy: array has shape \(3,\); expected \(4,\): one label per patch of X.npy"),
    ("values", r"Y.npy: 1 labels are not 0 or 1 \(first at row 2: 2\)"),
    ("ylabels", r"Y.npy: array is float64; expected integer labels"),
    ("pickled", r"Y.npy: stores Python objects \(pickled\); refusing to load it"),
    ("garbage", r"X.npy: not a valid .npy file"),
    ("missing", r"Y.npy: no such file"),
])
def test_npy_reader_errors_name_the_file(tmp_path, what, match):
    X, Y = _kaggle_npy(tmp_path, n=4)
    if what == "float":
        np.save(tmp_path / "X.npy", X.astype(np.float32))
    elif what == "size":
        np.save(tmp_path / "X.npy", X[:, :48])
    elif what == "length":
        np.save(tmp_path / "Y.npy", Y[:3])
    elif what == "values":
        np.save(tmp_path / "Y.npy", np.array([0, 1, 2, 0]))
    elif what == "ylabels":
        np.save(tmp_path / "Y.npy", Y.astype(np.float64))
    elif what == "pickled":
        np.save(tmp_path / "Y.npy", np.array([0, 1, "a", None], dtype=object), allow_pickle=True)
    elif what == "garbage":
        (tmp_path / "X.npy").write_bytes(b"not numpy at all")
    elif what == "missing":
        (tmp_path / "Y.npy").unlink()
    with pytest.raises(DataError, match=match):
        read_idc_npy(tmp_path / "X.npy", tmp_path / "Y.npy")


def test_npy_reader_warns_when_patches_look_bgr(tmp_path, caplog):
    X, Y = _kaggle_npy(tmp_path, n=5)
    np.save(tmp_path / "X.npy", np.ascontiguousarray(X[..., ::-1]))
    with caplog.at_level(logging.WARNING, logger="breastdx.data.idc"):
        read_idc_npy(tmp_path / "X.npy", tmp_path / "Y.npy")
    assert "may be stored BGR" in caplog.text


# ----------------------------------------------------------------------------------------------------
# IDC_regular


SPEC = {
    "10253": [(0, 1001, 1001), (0, 1051, 1001), (1, 1351, 1101)],
    "8863": [(0, 51, 101), (1, 101, 101)],
    "9036": [(1, 2401, 1051)],
}


def test_parse_idc_name():
    assert parse_idc_name("10253_idx5_x1351_y1101_class0.png") == ("10253", 1351, 1101, 0)
    with pytest.raises(DataError, match=r"foo.png: file name does not follow the IDC convention"):
        parse_idc_name("some/dir/foo.png")


def test_folder_reader_reads_patients_and_coordinates(tmp_path):
    root = _idc_regular(tmp_path / "IDC_regular_ps50_idx5", SPEC)
    src = read_idc_folders(root)
    assert len(src) == 6 and src.name == "idc"
    assert src.class_counts() == {"normal": 3, "tumour": 3}
    k = src.ids.index("10253/1/10253_idx5_x1351_y1101_class1.png")
    assert src.labels[k] == 1 and src.groups[k] == "10253"
    assert src.metadata["x"][k] == 1351 and src.metadata["y"][k] == 1101
    image, label = src.get(k)
    assert image.shape == (50, 50, 3) and image.dtype == np.uint8 and label == 1
    assert sorted(set(src.groups)) == ["10253", "8863", "9036"]


def test_edge_patches_are_padded_with_white(tmp_path):
    root = _idc_regular(tmp_path, {"12345": [(0, 1, 1)]}, size=(31, 50))  # a patch cut at the slide's bottom
    raw = np.asarray(Image.open(next(root.rglob("*.png"))))
    image, _ = read_idc_folders(root).get(0)
    assert image.shape == (50, 50, 3)
    np.testing.assert_array_equal(image[:31], raw)
    assert (image[31:] == 255).all()
    assert read_idc_folders(root, pad=False).get(0)[0].shape == (31, 50, 3)
    big = _idc_regular(tmp_path / "big", {"1": [(0, 1, 1)]}, size=(52, 50))
    with pytest.raises(ImageReadError, match=r"class0.png: patch is 52x50 \(HxW\), larger than the 50x50"):
        read_idc_folders(big).get(0)


def test_folder_reader_lists_every_disagreement(tmp_path):
    root = _idc_regular(tmp_path, SPEC)
    good = root / "8863" / "0" / "8863_idx5_x51_y101_class0.png"
    good.rename(root / "8863" / "0" / "9036_idx5_x51_y101_class0.png")  # other patient's name
    (root / "10253" / "1" / "10253_idx5_x1351_y1101_class1.png").rename(
        root / "10253" / "1" / "10253_idx5_x1351_y1101_class0.png")  # class 0 in folder 1
    (root / "9036" / "1" / "patch.png").write_bytes(b"x")  # off the convention
    (root / "9036" / "2").mkdir()  # not a class folder
    with pytest.raises(DataError) as info:
        read_idc_folders(root)
    msg = str(info.value)
    assert "not a valid IDC_regular folder" in msg
    assert "9036_idx5_x51_y101_class0.png: the name gives patient 9036 but the file is in patient folder 8863" in msg
    assert "10253_idx5_x1351_y1101_class0.png: the name gives class 0 but the file is in class folder 1" in msg
    assert "patch.png: file name does not follow" in msg
    assert "9036/2: unexpected folder in a patient folder" in msg


def test_find_idc_prefers_patient_folders_and_one_copy(tmp_path):
    idc = tmp_path / "idc"
    _idc_regular(idc / "IDC_regular_ps50_idx5", SPEC)
    _idc_regular(idc, SPEC)  # the Kaggle archive holds the patients twice
    _kaggle_npy(idc)
    assert find_idc(tmp_path) == ("folders", idc / "IDC_regular_ps50_idx5")
    src = load_patch_dataset("idc", tmp_path)
    assert len(src) == 6
    only_npy = tmp_path / "npy"
    _kaggle_npy(only_npy / "idc", n=5)
    assert find_idc(only_npy) == ("npy", only_npy / "idc")
    assert len(load_idc(only_npy)) == 5
    with pytest.raises(DataError, match=r"IDC not found below .*X.npy with Y.npy.*Kaggle"):
        find_idc(tmp_path / "empty")
    with pytest.raises(ValueError, match="IDC has no official split"):
        load_idc(tmp_path, split="train")


# ----------------------------------------------------------------------------------------------------
# Patient-level split


def test_patient_split_never_shares_a_patient(tmp_path):
    rng = np.random.default_rng(1)
    spec = {}
    for p in range(30):
        spec[str(8000 + p)] = [(int(rng.random() < 0.4), 1 + 50 * k, 1) for k in range(int(rng.integers(2, 7)))]
    src = read_idc_folders(_idc_regular(tmp_path, spec))
    split = patient_split(src, seed=3)
    position = {item: i for i, item in enumerate(src.ids)}
    owner = {}
    for s in ("train", "val", "test"):
        for item in split.split(s):
            patient = src.groups[position[item]]
            assert owner.setdefault(patient, s) == s, f"patient {patient} in {owner[patient]} and {s}"
    assert sorted(position[i] for s in ("train", "val", "test") for i in split.split(s)) == list(range(len(src)))
    assert split.summary["grouped_by"] == "patient"
    assert patient_split(src, seed=3).train == split.train


def test_npy_split_is_stratified_only_and_says_so(tmp_path, caplog):
    _kaggle_npy(tmp_path, n=60)
    src = read_idc_npy(tmp_path / "X.npy", tmp_path / "Y.npy")
    with caplog.at_level(logging.WARNING):
        split = patient_split(src, ratios=(0.5, 0.25, 0.25), seed=0)
    assert "no patient ids" in caplog.text
    assert split.summary["grouped_by"] is None and "optimistic" in split.summary["warning"]
    assert split.summary["counts"]["train"] == {"normal": 20, "tumour": 10}
