"""Dataset downloads through file:// URLs: checksums, manifests, unsafe archives, no overwriting."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.busi import scan_busi
from breastdx.data.download import (
    DATASETS,
    DownloadError,
    RemoteDataset,
    download,
    download_dataset,
    load_manifest,
    safe_extract,
    verify_files,
)
from breastdx.registry import UnknownNameError

RELEASE = "Dataset_BUSI_with_GT"


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _release_files() -> dict[str, bytes]:
    """A tiny BUSI release: one case per class, one with two masks."""
    rng = np.random.default_rng(0)
    files = {}
    for label, n, masks in (("normal", 1, 1), ("benign", 4, 2), ("malignant", 7, 1)):
        files[f"{RELEASE}/{label}/{label} ({n}).png"] = _png_bytes(rng.integers(0, 256, (13, 17, 3), dtype=np.uint8))
        for k in range(masks):
            m = np.zeros((13, 17), np.uint8)
            if label != "normal":
                m[3:6, 4 + k:9 + k] = 255
            suffix = "_mask" if k == 0 else f"_mask_{k}"
            files[f"{RELEASE}/{label}/{label} ({n}){suffix}.png"] = _png_bytes(m)
    return files


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _manifest(path: Path, files: dict[str, bytes]) -> Path:
    with open(path, "w", newline="") as f:
        f.write("# test manifest\n")
        w = csv.writer(f)
        w.writerow(["file", "sha256"])
        for name, data in sorted(files.items()):
            w.writerow([name, hashlib.sha256(data).hexdigest()])
    return path


@pytest.fixture
def release(tmp_path):
    files = _release_files()
    archive = _zip(tmp_path / "Dataset_BUSI.zip", files)
    manifest = _manifest(tmp_path / "manifest.csv", files)
    spec = RemoteDataset(name="busi-test", url="https://example.invalid/Dataset_BUSI.zip",
                         archive_sha256=hashlib.sha256(archive.read_bytes()).hexdigest(), folder="busi",
                         citation="test", licence="CC BY 4.0", archive_root=RELEASE, manifest=str(manifest))
    return spec, archive, files


def _leftovers(data_root: Path) -> list[str]:
    return sorted(p.name for p in data_root.iterdir() if p.name.startswith("."))


def test_registry_entries():
    assert {"busi", "breastmnist"} <= set(DATASETS.names())
    busi = DATASETS.get("busi")
    assert busi.url == "https://scholar.cu.edu.eg/Dataset_BUSI.zip" and busi.archive_root == RELEASE
    assert busi.folder == "busi" and "10.1016/j.dib.2019.104863" in busi.citation
    bm = DATASETS.get("breastmnist")
    assert bm.url == "https://zenodo.org/records/10519652/files/breastmnist.npz"
    assert bm.archive_md5 == "750601b1f35ba3300ea97c75c52ff8f6" and bm.filename == "breastmnist.npz"
    with pytest.raises(UnknownNameError, match="Did you mean 'busi'"):
        DATASETS.get("bussi")


def test_shipped_busi_manifest():
    manifest = load_manifest("busi_sha256.csv")
    assert len(manifest) == 1578  # 780 images + 798 masks
    assert all(k.startswith(f"{RELEASE}/") for k in manifest)
    assert sum(k.endswith(").png") for k in manifest) == 780


def test_shipped_manifest_matches_the_release_files(busi_sample):
    manifest = load_manifest("busi_sha256.csv")
    files = sorted(busi_sample.glob("*/*.png"))
    assert files
    for f in files:
        rel = f"{RELEASE}/{f.parent.name}/{f.name}"
        assert manifest[rel] == hashlib.sha256(f.read_bytes()).hexdigest(), rel


def test_download_busi_layout_through_file_url(tmp_path, release):
    spec, archive, _ = release
    seen = []
    dest = download(spec, tmp_path / "data", url=archive.as_uri(), progress=lambda done, total: seen.append(done))
    assert dest == tmp_path / "data" / "busi"
    cases = scan_busi(dest)
    assert [c.name for c in cases] == ["benign (4)", "malignant (7)", "normal (1)"]
    assert len(cases[0].masks) == 2
    assert seen and seen[-1] == archive.stat().st_size
    assert _leftovers(tmp_path / "data") == []


def test_download_dataset_by_name(tmp_path, release, monkeypatch):
    spec, archive, _ = release
    monkeypatch.setitem(DATASETS._entries, "busi", dataclasses.replace(spec, name="busi"))
    dest = download_dataset("busi", tmp_path / "root", url=archive.as_uri())
    assert (dest / "benign" / "benign (4)_mask_1.png").is_file()


def test_archive_checksum_mismatch(tmp_path, release):
    spec, archive, _ = release
    bad = dataclasses.replace(spec, archive_sha256="0" * 64)
    with pytest.raises(DownloadError) as info:
        download(bad, tmp_path / "data", url=archive.as_uri())
    msg = str(info.value)
    assert archive.as_uri() in msg and f"expected {'0' * 64}" in msg
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in msg
    assert not (tmp_path / "data" / "busi").exists() and _leftovers(tmp_path / "data") == []


def test_manifest_mismatch_lists_files(tmp_path, release):
    spec, _, files = release
    changed = dict(files)
    changed[f"{RELEASE}/benign/benign (4).png"] = b"\x89PNG altered"
    del changed[f"{RELEASE}/normal/normal (1)_mask.png"]
    changed[f"{RELEASE}/normal/extra.png"] = b"x"
    changed["__MACOSX/._junk"] = b"x"  # ignored
    archive = _zip(tmp_path / "other.zip", changed)
    no_sum = dataclasses.replace(spec, archive_sha256=None)
    with pytest.raises(DownloadError, match="do not match the published checksums") as info:
        download(no_sum, tmp_path / "data", url=archive.as_uri())
    problems = "\n".join(info.value.problems)
    assert "benign (4).png: SHA-256 mismatch: expected" in problems
    assert "normal (1)_mask.png: missing" in problems
    assert "normal/extra.png: not in the manifest" in problems
    assert "__MACOSX" not in problems and len(info.value.problems) == 3
    assert not (tmp_path / "data" / "busi").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/abs_evil.txt", "a/../../evil.txt", "C:/evil.txt"])
def test_path_traversal_is_refused(tmp_path, release, member):
    spec, _, files = release
    archive = _zip(tmp_path / "evil.zip", {**files, member: b"pwned"})
    with pytest.raises(DownloadError, match="unsafe member paths") as info:
        download(dataclasses.replace(spec, archive_sha256=None), tmp_path / "data", url=archive.as_uri())
    assert member in "\n".join(info.value.problems)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "busi").exists()


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")


def test_not_a_zip(tmp_path, release):
    spec, _, _ = release
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(DownloadError, match="not a valid zip archive"):
        download(dataclasses.replace(spec, archive_sha256=None), tmp_path / "data", url=fake.as_uri())


def test_existing_folder_is_kept_unless_force(tmp_path, release):
    spec, archive, _ = release
    dest = tmp_path / "data" / "busi"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(DownloadError, match=r"busi already exists; it is not replaced.*force"):
        download(spec, tmp_path / "data", url=archive.as_uri())
    assert (dest / "mine.txt").read_text() == "keep"
    download(spec, tmp_path / "data", url=archive.as_uri(), force=True)
    assert not (dest / "mine.txt").exists() and (dest / "benign").is_dir()
    assert _leftovers(tmp_path / "data") == []


def test_single_file_with_md5(tmp_path):
    npz = tmp_path / "breastmnist.npz"
    np.savez_compressed(npz, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.array([0, 1]))
    md5 = hashlib.md5(npz.read_bytes()).hexdigest()
    spec = dataclasses.replace(DATASETS.get("breastmnist"), archive_md5=md5)
    dest = download(spec, tmp_path / "data", url=npz.as_uri())
    assert (dest / "breastmnist.npz").read_bytes() == npz.read_bytes()
    wrong = dataclasses.replace(spec, archive_md5="f" * 32)
    with pytest.raises(DownloadError, match=f"MD5 checksum mismatch: expected {'f' * 32}, got {md5}"):
        download(wrong, tmp_path / "other", url=npz.as_uri())


def test_missing_source_and_bad_scheme(tmp_path, release):
    spec, _, _ = release
    with pytest.raises(DownloadError, match="download failed") as missing:
        download(spec, tmp_path / "data", url=(tmp_path / "nothing.zip").as_uri())
    assert "offline" not in str(missing.value)  # a local file that is not there is no network problem
    import socket

    with socket.socket() as s:  # a port nothing listens on: the connection is refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"could not be reached: the machine may be offline\. .*--url file:///"):
        download(spec, tmp_path / "data", url=f"http://127.0.0.1:{port}/busi.zip")
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        download(spec, tmp_path / "data", url="ftp://example.invalid/x.zip")
    local = tmp_path / "busi.zip"
    local.write_bytes(b"PK")
    with pytest.raises(DownloadError, match=f"unsupported URL scheme ''.*A local file is given as a URL: "
                                            f"{local.resolve().as_uri()}"):
        download(spec, tmp_path / "data", url=str(local))
    assert _leftovers(tmp_path / "data") == []


def test_verify_files_direct(tmp_path):
    (tmp_path / "top" / "a").mkdir(parents=True)
    (tmp_path / "top" / "a" / "x.bin").write_bytes(b"abc")
    ok = {"top/a/x.bin": hashlib.sha256(b"abc").hexdigest()}
    assert verify_files(tmp_path, ok) == []
    (tmp_path / "top" / ".DS_Store").write_bytes(b"")
    assert verify_files(tmp_path, ok) == []


def test_a_data_root_that_cannot_be_written_and_a_member_in_a_files_place(tmp_path, release):
    """Raw OS errors named temporary folders ('.busi.download-xyz/unpacked/...') that no longer exist."""
    spec, archive, files = release
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    with pytest.raises(DownloadError, match=rf"^Cannot write into the data root {blocked} \(.*\); choose a folder"):
        download(spec, blocked, url=archive.as_uri())
    collide = _zip(tmp_path / "collide.zip", {"top/benign": b"a file", "top/benign/a.png": b"x"})
    with pytest.raises(DownloadError, match=r"member 'top/benign/a.png' cannot be unpacked \(.*\): the archive "
                                            r"holds a file and a folder of the same name\?"):
        safe_extract(collide, tmp_path / "out", "collide.zip")
