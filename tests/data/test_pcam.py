"""PCam readers: the folder layout (real subset and synthetic), the official HDF5 layout (files made from the
subset, since no official file is available here), load_pcam's format choice, and download_pcam over file:// URLs."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from breastdx.data.download import DownloadError
from breastdx.data.errors import DataError
from breastdx.data.images import ImageReadError
from breastdx.data.patches import ArrayPatchSource, load_patch_dataset, patch_dataset_names
from breastdx.data import pcam
from breastdx.data.pcam import (
    PCAM_FILES,
    PCAM_SPLITS,
    TRUNCATED_HDF5_HINT,
    PcamH5Source,
    download_pcam,
    h5_paths,
    load_pcam,
    read_pcam_folder,
    read_pcam_h5,
    write_pcam_h5,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pcam_subset() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    p = Path(env) / "pcam_subset"
    if not p.is_dir():
        pytest.skip(f"real data not available: {p} does not exist")
    return p


def _patches(n: int, seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _write_folder(root: Path, split: str, images: np.ndarray, labels: list[int], ext: str = ".png") -> None:
    for i, (im, lab) in enumerate(zip(images, labels)):
        d = root / split / str(lab)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(d / f"patch{i:07d}{ext}")


def _write_h5(folder: Path, split: str, x: np.ndarray, y: np.ndarray, x_key: str = "x", y_key: str = "y") -> None:
    xp, yp = h5_paths(folder, split)
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(xp, "w") as f:
        f.create_dataset(x_key, data=x)
    with h5py.File(yp, "w") as f:
        f.create_dataset(y_key, data=y)


# ----------------------------------------------------------------------------------------------------
# Real folder subset


@pytest.mark.parametrize("split, n0, n1", [("train", 2000, 2000), ("valid", 1500, 1500), ("test", 1500, 1500)])
def test_real_subset_counts(pcam_subset, split, n0, n1):
    src = read_pcam_folder(pcam_subset, split)
    assert len(src) == n0 + n1
    assert src.class_counts() == {"normal": n0, "tumour": n1}
    assert src.class_names == ("normal", "tumour")
    assert src.groups is None
    assert len(set(src.ids)) == len(src) and all(i.startswith(f"{split}/") for i in src.ids)
    image, label = src.get(0)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8 and label == int(src.ids[0].split("/")[1])
    assert src.metadata["index"][0] == int(Path(src.ids[0]).stem[5:])


def test_load_pcam_finds_the_subset(pcam_subset):
    src = load_patch_dataset("pcam", pcam_subset.parent, split="valid")
    assert len(src) == 3000
    everything = load_pcam(pcam_subset.parent, split=None)
    assert len(everything) == 10000 and everything.class_counts() == {"normal": 5000, "tumour": 5000}
    assert everything.ids[0].startswith("train/") and everything.ids[-1].startswith("test/")
    assert patch_dataset_names() == ["breakhis", "idc", "pcam"]


def test_h5_built_from_subset_reads_back_identical(pcam_subset, tmp_path):
    folder_src = read_pcam_folder(pcam_subset, "valid").subset(range(0, 3000, 20))  # 150, both classes
    xp, yp = write_pcam_h5(tmp_path / "pcam", "valid", folder_src, batch=64)
    with h5py.File(xp) as f, h5py.File(yp) as g:  # exactly the official layout
        assert f["x"].shape == (150, 96, 96, 3) and f["x"].dtype == np.uint8
        assert g["y"].shape == (150, 1, 1, 1) and g["y"].dtype == np.uint8
    h5 = read_pcam_h5(tmp_path / "pcam", "valid")
    assert len(h5) == 150
    np.testing.assert_array_equal(h5.labels, folder_src.labels)
    for i in range(len(h5)):
        a, la = h5.get(i)
        b, lb = folder_src.get(i)
        np.testing.assert_array_equal(a, b)  # pixels equal to the JPEG decode
        assert la == lb
    batch, labels = h5.get_many([5, 1, 5, 149])
    np.testing.assert_array_equal(batch[0], folder_src.get(5)[0])
    np.testing.assert_array_equal(batch[3], folder_src.get(149)[0])
    np.testing.assert_array_equal(labels, folder_src.labels[[5, 1, 5, 149]])
    np.testing.assert_array_equal(h5.read_range(10, 13)[2], folder_src.get(12)[0])
    # load_pcam prefers the HDF5 files in <root>/pcam over the folders
    (tmp_path / "pcam_subset").symlink_to(pcam_subset)
    assert isinstance(load_pcam(tmp_path, "valid"), PcamH5Source)
    assert not isinstance(load_pcam(tmp_path, "test"), PcamH5Source)


# ----------------------------------------------------------------------------------------------------
# Synthetic folder layout


def test_folder_reader_lists_every_problem(tmp_path):
    _write_folder(tmp_path, "train", _patches(4), [0, 1, 0, 1])
    (tmp_path / "train" / "2").mkdir()
    (tmp_path / "train" / "0" / "notes.txt").write_text("x")
    (tmp_path / "train" / "1" / "empty.jpg").write_bytes(b"")
    Image.fromarray(_patches(1)[0]).save(tmp_path / "train" / "1" / "patch0000000.png")  # also under 0/
    (tmp_path / "train" / "0" / ".DS_Store").write_bytes(b"x")  # hidden: ignored
    with pytest.raises(DataError) as info:
        read_pcam_folder(tmp_path, "train")
    msg = str(info.value)
    assert "not a valid PCam folder split" in msg
    assert "train/2: unexpected folder" in msg
    assert "notes.txt: not a patch file" in msg
    assert "empty.jpg: empty file" in msg
    assert "patch0000000.png: the same name is also under label 0" in msg
    assert ".DS_Store" not in msg


def test_folder_reader_errors_for_missing_split_and_bad_split(tmp_path):
    with pytest.raises(DataError, match=r"valid: no such folder; expected the PCam folder layout"):
        read_pcam_folder(tmp_path, "valid")
    with pytest.raises(ValueError, match=r"one of train, valid, test; got 'val'"):
        read_pcam_folder(tmp_path, "val")
    (tmp_path / "test" / "0").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no patch files"):
        read_pcam_folder(tmp_path, "test")


def test_corrupt_and_wrong_size_files_are_named(tmp_path):
    _write_folder(tmp_path, "test", _patches(3), [0, 1, 1], ext=".jpg")
    bad = tmp_path / "test" / "1" / "patch0000002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    Image.fromarray(_patches(1, size=64)[0]).save(tmp_path / "test" / "0" / "patch0000009.jpg")
    src = read_pcam_folder(tmp_path, "test")
    assert len(src) == 4  # listed, never silently dropped
    with pytest.raises(ImageReadError, match=r"patch0000002.jpg"):
        src.get(src.ids.index("test/1/patch0000002.jpg"))
    with pytest.raises(ImageReadError, match=r"patch0000009.jpg: patch has shape \(64, 64, 3\), expected \(96, 96, 3\)"):
        src.get(src.ids.index("test/0/patch0000009.jpg"))
    with pytest.raises(DataError) as info:
        src.verify()
    assert "2 of 4 items cannot be read" in str(info.value)
    assert "patch0000002.jpg" in str(info.value) and "patch0000009.jpg" in str(info.value)
    with pytest.raises(IndexError, match="out of range"):
        src.get(4)


def test_folder_checksum_depends_on_bytes_not_location(tmp_path):
    images = _patches(3)
    _write_folder(tmp_path / "a", "train", images, [0, 1, 0])
    _write_folder(tmp_path / "b", "train", images, [0, 1, 0])
    a, b = read_pcam_folder(tmp_path / "a", "train"), read_pcam_folder(tmp_path / "b", "train")
    assert a.checksum == b.checksum
    Image.fromarray(255 - images[0]).save(tmp_path / "b" / "train" / "0" / "patch0000000.png")
    assert read_pcam_folder(tmp_path / "b", "train").checksum != a.checksum


def test_load_pcam_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=r"PCam not found below .*camelyonpatch_level_2_split_train_x.h5.*"
                                        r"breastdx data download pcam"):
        load_pcam(tmp_path, "train")


# ----------------------------------------------------------------------------------------------------
# HDF5 validation


def test_h5_validation_names_the_file(tmp_path):
    x = _patches(5)
    y = np.array([0, 1, 1, 0, 1], np.uint8).reshape(5, 1, 1, 1)
    _write_h5(tmp_path / "len", "train", x, y[:4])
    with pytest.raises(DataError, match=r"_train_y.h5: dataset 'y' has shape \(4, 1, 1, 1\); expected \(5, 1, 1, 1\)"):
        read_pcam_h5(tmp_path / "len", "train")
    _write_h5(tmp_path / "key", "train", x, y, x_key="images")
    with pytest.raises(DataError, match=r"_train_x.h5: no dataset 'x' \(it holds images\)"):
        read_pcam_h5(tmp_path / "key", "train")
    _write_h5(tmp_path / "dtype", "train", x.astype(np.float32), y)
    with pytest.raises(DataError, match=r"dataset 'x' is float32 of shape \(5, 96, 96, 3\); expected uint8"):
        read_pcam_h5(tmp_path / "dtype", "train")
    _write_h5(tmp_path / "lab", "train", x, np.array([0, 1, 2, 0, 1], np.uint8).reshape(5, 1, 1, 1))
    with pytest.raises(DataError, match=r"1 labels are not 0 or 1 \(first at row 2: 2\)"):
        read_pcam_h5(tmp_path / "lab", "train")
    with pytest.raises(DataError, match=r"_test_x.h5: no such file"):
        read_pcam_h5(tmp_path / "lab", "test")
    gz = tmp_path / "gz"
    _write_h5(gz, "valid", x, y)
    xp, _ = h5_paths(gz, "valid")
    xp.write_bytes(gzip.compress(xp.read_bytes()))
    with pytest.raises(DataError, match=r"still gzip-compressed"):
        read_pcam_h5(gz, "valid")
    xp.write_text("hello")
    with pytest.raises(DataError, match=r"not an HDF5 file"):
        read_pcam_h5(gz, "valid")


def test_h5_flat_labels_accepted_and_source_pickles(tmp_path):
    x = _patches(6, seed=3)
    _write_h5(tmp_path, "test", x, np.array([1, 0, 1, 0, 1, 0], np.uint8))
    src = read_pcam_h5(tmp_path, "test")
    np.testing.assert_array_equal(src.get(2)[0], x[2])
    clone = pickle.loads(pickle.dumps(src))  # what a spawned data-loader worker receives
    assert clone._file is None
    np.testing.assert_array_equal(clone.get(4)[0], x[4])
    assert src.ids[:2] == ["test/0", "test/1"]
    src.close()
    np.testing.assert_array_equal(src.get(5)[0], x[5])  # reopened on demand
    assert src.checksum == read_pcam_h5(tmp_path, "test").checksum


def test_h5_source_in_forked_data_loader_workers(tmp_path):
    import torch
    from torch.utils.data import DataLoader, Dataset

    x = _patches(8, seed=4)
    _write_h5(tmp_path, "train", x, (np.arange(8) % 2).astype(np.uint8).reshape(8, 1, 1, 1))
    src = read_pcam_h5(tmp_path, "train")
    src.get(0)  # the parent opens its handle first; each worker must open its own

    class Wrap(Dataset):
        def __len__(self):
            return len(src)

        def __getitem__(self, i):
            image, label = src.get(i)
            return torch.from_numpy(image), label

    loader = DataLoader(Wrap(), batch_size=3, num_workers=2, multiprocessing_context="fork")
    images = torch.cat([b[0] for b in loader]).numpy()
    np.testing.assert_array_equal(images, x)


# ----------------------------------------------------------------------------------------------------
# Download over file:// URLs


def _mirror(tmp_path: Path, monkeypatch, corrupt: str | None = None) -> str:
    """Small official-layout files, gzipped as on Zenodo, with their MD5s patched into PCAM_FILES."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = dict(PCAM_FILES)
    for k, split in enumerate(("train", "valid", "test")):
        src = ArrayPatchSource(_patches(4 + k, seed=k), [0, 1] * 2 + [1] * k, name="pcam")
        xp, yp = write_pcam_h5(tmp_path / "plain", split, src)
        for p in (xp, yp):
            data = gzip.compress(p.read_bytes())
            (mirror / f"{p.name}.gz").write_bytes(data)
            files[p.name] = (files[p.name][0], hashlib.md5(data).hexdigest())
        meta = f"camelyonpatch_level_2_split_{split}_meta.csv"
        (mirror / meta).write_text("coord_y,coord_x\n0,0\n")
        files[meta] = (files[meta][0], hashlib.md5((mirror / meta).read_bytes()).hexdigest())
    if corrupt:
        files[corrupt] = (files[corrupt][0], "0" * 32)
    monkeypatch.setattr(pcam, "PCAM_FILES", files)
    return mirror.as_uri()


def test_download_pcam_from_file_urls(tmp_path, monkeypatch):
    base = _mirror(tmp_path, monkeypatch)
    dest = download_pcam(tmp_path / "root", base_url=base)
    assert dest == tmp_path / "root" / "pcam"
    assert sorted(p.name for p in dest.iterdir()) == sorted(PCAM_FILES)  # no .gz, .part or temp left
    src = load_pcam(tmp_path / "root", "valid")
    assert isinstance(src, PcamH5Source) and len(src) == 5
    np.testing.assert_array_equal(src.get(3)[0], _patches(5, seed=1)[3])
    # files in place are kept: a second call needs no mirror, and the command says they were not MD5-checked
    kept: list = []
    download_pcam(tmp_path / "root", base_url=(tmp_path / "gone").as_uri(), kept=kept)
    assert sorted(kept) == sorted(PCAM_FILES)
    from typer.testing import CliRunner

    from breastdx.cli import app

    result = CliRunner().invoke(app, ["data", "download", "pcam", "--data-dir", str(tmp_path / "root"), "--url",
                                      (tmp_path / "gone").as_uri()], terminal_width=400)
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and "verified" not in said.replace("verifies", ""), said
    assert "9 file(s) already there were kept without an MD5 check (only their layout was checked" in said


def test_download_pcam_refuses_a_wrong_md5(tmp_path, monkeypatch):
    base = _mirror(tmp_path, monkeypatch, corrupt="camelyonpatch_level_2_split_test_y.h5")
    with pytest.raises(DownloadError, match=r"test_y.h5.gz: MD5 checksum mismatch: expected 0{32}, got [0-9a-f]{32}"):
        download_pcam(tmp_path / "root", base_url=base, splits=("test",))
    left = sorted(p.name for p in (tmp_path / "root" / "pcam").iterdir())
    assert "camelyonpatch_level_2_split_test_y.h5" not in left
    assert not any(n.endswith((".part", ".download")) for n in left)


def test_pcam_files_are_the_published_ones():
    assert len(PCAM_FILES) == 9
    for name, (url, md5) in PCAM_FILES.items():
        assert url.startswith("https://zenodo.org/records/2546921/files/" + name)
        assert md5 is not None and len(md5) == 32
    assert PCAM_FILES["camelyonpatch_level_2_split_valid_x.h5"][1] == "d5b63470df7cfa627aeec8b9dc0c066e"


# ----------------------------------------------------------------------------------------------------
# Memory


@pytest.mark.slow
def test_h5_reader_peak_memory_under_1_gb_for_50000_patches(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pcam_hdf5_memory.py"), "--n", "50000",
                          "--dir", str(tmp_path)], check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["n"] == 50000
    assert figures["peak_rss_mib"] < 1024


def test_model_card_says_which_form_of_pcam_was_read(pcam_subset, tmp_path):
    """A model trained on the HDF5 release is not described as trained on the JPEG subset, nor the reverse."""
    from breastdx.data.patches import ConcatPatchSource
    from breastdx.tasks.pcam import _about

    for s in PCAM_SPLITS:
        write_pcam_h5(tmp_path / "pcam", s, read_pcam_folder(pcam_subset, s).subset(range(0, 40, 4)), batch=8)
    h5 = _about(load_pcam(tmp_path, None))
    assert "Read from the HDF5 files of the release (train: 10 patches, valid: 10 patches, test: 10 patches)" in h5
    assert "JPEG" not in h5
    jpeg = _about(ConcatPatchSource([read_pcam_folder(pcam_subset, s) for s in PCAM_SPLITS], name="pcam"))
    assert "The JPEG subset holds the first 2,000 patches per class of train" in jpeg and "HDF5 files of" not in jpeg


def test_a_truncated_h5_is_refused_naming_the_file(tmp_path):
    """h5py's own error ('Unable to synchronously open file (truncated file: ...)') named no file."""
    n = 40
    _write_h5(tmp_path, "test", _patches(n), np.zeros((n, 1, 1, 1), np.uint8))
    xp, _ = h5_paths(tmp_path, "test")
    os.truncate(xp, xp.stat().st_size - 96 * 96 * 3 * 10)  # the last 10 patches missing: an interrupted copy
    with pytest.raises(DataError, match=rf"^{xp}: not a readable HDF5 file \(.*truncated.*\); expected the official "
                                        rf"PCam file\. It is shorter than its header says") as err:
        load_pcam(tmp_path, "test")
    # one advice, said once: the way out for any copy, and for the official files the download (which keeps
    # the files in place, so the short one must go first)
    assert str(err.value).endswith(f"PCam file. {TRUNCATED_HDF5_HINT}") and str(err.value).count("shorter than") == 1
    assert "delete it and run `breastdx data download pcam`" in TRUNCATED_HDF5_HINT


def test_only_the_gzipped_downloads_in_place_are_named(tmp_path):
    """With the .h5.gz files as published (not decompressed) the message said 'PCam not found' and no more."""
    _write_h5(tmp_path / "plain", "valid", _patches(3), np.zeros((3, 1, 1, 1), np.uint8))
    (tmp_path / "root" / "pcam").mkdir(parents=True)
    for p in h5_paths(tmp_path / "plain", "valid"):
        (tmp_path / "root" / "pcam" / f"{p.name}.gz").write_bytes(gzip.compress(p.read_bytes()))
    xp, yp = h5_paths(tmp_path / "root" / "pcam", "valid")
    with pytest.raises(DataError, match=rf"^PCam valid: found {xp}\.gz, {yp}\.gz, still gzip-compressed; decompress "
                                        rf"\(gunzip\) them in place"):
        load_pcam(tmp_path / "root", "valid")
    with pytest.raises(DataError, match=r"^PCam not found below"):
        load_pcam(tmp_path / "root", "test")
