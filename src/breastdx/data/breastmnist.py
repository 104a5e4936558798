"""BreastMNIST (MedMNIST v2): 780 BUSI images at 28 x 28 with the official train / val / test split.

The file is MedMNIST's ``breastmnist.npz`` with six arrays: ``train_images``, ``val_images``,
``test_images`` (``uint8``, shape ``(N, 28, 28)``) and ``train_labels``, ``val_labels``, ``test_labels``
(integers in {0, 1}, shape ``(N, 1)`` in the official file, ``(N,)`` in some re-saved copies; both are
accepted). Official sizes: 546 / 78 / 156.

**Label encoding.** MedMNIST stores ``0 = malignant`` and ``1 = normal or benign``. breastdx's binary
metrics take the malignant class as positive (label 1), so :func:`read_breastmnist` converts:
``label = 1 - medmnist_label`` (0 = normal or benign, 1 = malignant) and keeps the original values in
``medmnist_labels``. Class names in breastdx's index order are :data:`CLASS_NAMES`.

The official file is checked by the MD5 the MedMNIST authors publish (registered in
:data:`breastdx.data.download.DATASETS` as ``"breastmnist"``); :func:`download_breastmnist` downloads and
verifies it. A re-saved copy with the same arrays reads the same but has another MD5;
:attr:`BreastMNIST.official` tells which one was read.

BreastMNIST's split is random, not grouped by patient or by near-duplicate frames: BUSI's duplicates
(:mod:`breastdx.data.busi`) cross it. It is a benchmark, comparable with the MedMNIST v2 table, not a
leak-free estimate.

References:
    Yang, J. et al. (2023). MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical
    image classification. Scientific Data 10:41. doi:10.1038/s41597-022-01721-8
    Al-Dhabyani, W. et al. (2020). Dataset of breast ultrasound images. Data in Brief 28:104863.
    doi:10.1016/j.dib.2019.104863
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from breastdx.data.checksum import sha256_file
from breastdx.data.errors import DataError

logger = logging.getLogger(__name__)

BREASTMNIST_FOLDER = "breastmnist"
"""Folder below the data root."""

BREASTMNIST_FILE = "breastmnist.npz"
"""File name inside :data:`BREASTMNIST_FOLDER`."""

SPLITS = ("train", "val", "test")
"""The official splits, in order."""

OFFICIAL_SIZES = {"train": 546, "val": 78, "test": 156}
"""Images per split of the official file (MedMNIST v2 INFO); other sizes are read with a warning."""

CLASS_NAMES = ("normal_or_benign", "malignant")
"""Class names in breastdx's index order (label 1 = malignant, the positive class)."""

MEDMNIST_CLASS_NAMES = {0: "malignant", 1: "normal, benign"}
"""MedMNIST's own encoding (its ``INFO["breastmnist"]["label"]``): 0 is malignant."""


@dataclass(frozen=True)
class BreastMNISTSplit:
    """One official split.

    Attributes:
        images: ``uint8`` array of shape ``(N, H, W)`` (28 x 28 in the official file).
        labels: breastdx labels, ``int64`` ``(N,)``: 0 = normal or benign, 1 = malignant.
        medmnist_labels: The stored labels, ``int64`` ``(N,)``: 0 = malignant, 1 = normal or benign.
    """

    images: np.ndarray
    labels: np.ndarray
    medmnist_labels: np.ndarray

    @property
    def n(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])


@dataclass(frozen=True)
class BreastMNIST:
    """The whole file: three splits and where they came from.

    Attributes:
        path: The ``.npz`` file read.
        sha256: SHA-256 of the file (the data checksum stored in runs and models).
        md5: MD5 of the file (the checksum MedMNIST publishes).
        official: Whether ``md5`` equals the published MD5 of the official file.
        train: The training split.
        val: The validation split.
        test: The test split.
    """

    path: Path
    sha256: str
    md5: str
    official: bool
    train: BreastMNISTSplit
    val: BreastMNISTSplit
    test: BreastMNISTSplit

    def split(self, name: str) -> BreastMNISTSplit:
        """The split ``name`` (``"train"``, ``"val"`` or ``"test"``).

        Raises:
            ValueError: For another name.
        """
        if name not in SPLITS:
            raise ValueError(f"BreastMNIST split must be one of {', '.join(SPLITS)}; got {name!r}.")
        return getattr(self, name)

    def summary(self) -> dict[str, dict[str, int]]:
        """Images per split and class (breastdx class names)."""
        return {s: {"n": self.split(s).n, **{c: int((self.split(s).labels == k).sum())
                                             for k, c in enumerate(CLASS_NAMES)}} for s in SPLITS}


def medmnist_to_malignant_positive(labels: np.ndarray) -> np.ndarray:
    """Convert MedMNIST labels (0 = malignant) to breastdx labels (1 = malignant).

    Args:
        labels: Integers in {0, 1}, shape ``(N,)`` or ``(N, 1)``.

    Returns:
        ``int64`` array ``(N,)``: ``1 - labels``.

    Raises:
        ValueError: If a value is not 0 or 1 or the shape is neither ``(N,)`` nor ``(N, 1)``.
    """
    a = np.asarray(labels)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"BreastMNIST labels must have shape (N,) or (N, 1), got {a.shape}.")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"BreastMNIST labels must be 0 (malignant) or 1 (normal, benign); found values "
                         f"{sorted(set(np.unique(a).tolist()) - {0, 1})[:5]}.")
    return (1 - a.astype(np.int64)).astype(np.int64)


def find_breastmnist(data_root: str | Path) -> Path:
    """The ``breastmnist.npz`` below the data root.

    Looks at ``<data_root>/breastmnist/breastmnist.npz``, then ``<data_root>/breastmnist.npz``; a path to
    the ``.npz`` file itself is returned as is.

    Raises:
        DataError: If none exists; the message says where it looked and how to get the file.
    """
    root = Path(data_root)
    if root.is_file():
        return root
    candidates = [root / BREASTMNIST_FOLDER / BREASTMNIST_FILE, root / BREASTMNIST_FILE]
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"BreastMNIST not found: none of {', '.join(map(str, candidates))} exists. Download it with "
                    f"`breastdx data download breastmnist` (into <data root>/{BREASTMNIST_FOLDER}), or point the "
                    f"data root (--data-dir or BREASTDX_DATA) at a folder that holds {BREASTMNIST_FOLDER}/.")


def md5_file(path: str | Path) -> str:
    """Hex MD5 of a file's bytes (the checksum MedMNIST publishes)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def official_md5() -> str:
    """The published MD5 of the official ``breastmnist.npz`` (from the download registry)."""
    from breastdx.data.download import DATASETS

    return str(DATASETS.get("breastmnist").archive_md5)


def read_breastmnist(path: str | Path) -> BreastMNIST:
    """Read and check a MedMNIST ``breastmnist.npz``.

    Every problem is collected before raising: missing keys, images that are not ``uint8`` of shape
    ``(N, H, W)``, labels not of shape ``(N,)`` or ``(N, 1)`` or with values other than 0 and 1, image and
    label counts that differ, splits of different image sizes. Split sizes other than the official
    546 / 78 / 156 are accepted with a warning (a subset made for tests, for example). Arrays are read
    without unpickling (``allow_pickle=False``).

    Args:
        path: The ``.npz`` file.

    Returns:
        A :class:`BreastMNIST` with labels converted to 1 = malignant (see the module docstring).

    Shape:
        ``images``: ``(N, H, W)`` ``uint8``; ``labels``: ``(N,)`` ``int64``.

    Raises:
        DataError: If the file is missing, not an ``.npz`` archive, or fails a check; the message names
            the file and lists every problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such BreastMNIST file.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a NumPy .npz archive ({type(e).__name__}: {e}).") from None
    problems: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    with archive:
        keys = set(archive.files)
        for split in SPLITS:
            for kind in ("images", "labels"):
                key = f"{split}_{kind}"
                if key not in keys:
                    problems.append(f"missing array {key!r} (found {', '.join(sorted(keys)) or 'none'})")
                    continue
                try:
                    arrays[key] = archive[key]
                except ValueError as e:  # an object array would need unpickling
                    problems.append(f"{key}: cannot be read without unpickling ({e})")
    sizes = set()
    splits: dict[str, BreastMNISTSplit] = {}
    for split in SPLITS:
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is None or labels is None:
            continue
        ok = True
        if images.dtype != np.uint8 or images.ndim != 3:
            problems.append(f"{split}_images: expected uint8 of shape (N, H, W), got {images.dtype} {images.shape}")
            ok = False
        else:
            sizes.add(images.shape[1:])
        if not (labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)):
            problems.append(f"{split}_labels: expected shape (N,) or (N, 1), got {labels.shape}")
            ok = False
        elif not np.issubdtype(labels.dtype, np.integer):
            problems.append(f"{split}_labels: expected integers, got {labels.dtype}")
            ok = False
        elif labels.size and not np.isin(labels, (0, 1)).all():
            bad = sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]
            problems.append(f"{split}_labels: expected 0 (malignant) or 1 (normal, benign), found {bad}")
            ok = False
        if ok and images.shape[0] != labels.shape[0]:
            problems.append(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
            ok = False
        if ok and images.shape[0] == 0:
            problems.append(f"{split}: no images")
            ok = False
        if ok:
            medmnist = labels.reshape(-1).astype(np.int64)
            splits[split] = BreastMNISTSplit(np.ascontiguousarray(images), medmnist_to_malignant_positive(medmnist),
                                             medmnist)
    if len(sizes) > 1:
        problems.append(f"splits have different image sizes: {sorted(sizes)}")
    if problems:
        raise DataError(f"{path}: not a valid BreastMNIST file.", problems)
    for split in SPLITS:
        if splits[split].n != OFFICIAL_SIZES[split]:
            logger.warning("%s: %s split has %d images; the official file has %d", path, split, splits[split].n,
                           OFFICIAL_SIZES[split])
    md5 = md5_file(path)
    official = md5 == official_md5()
    if not official:
        logger.info("%s: MD5 %s differs from the official file's %s: not the official file (a re-saved copy, a "
                    "conversion or other data; its pixels and labels cannot be compared here); its layout is checked "
                    "and its arrays read as they are", path, md5, official_md5())
    return BreastMNIST(path=path, sha256=sha256_file(path), md5=md5, official=official, **splits)


def load_breastmnist(data_root: str | Path) -> BreastMNIST:
    """:func:`read_breastmnist` on the file :func:`find_breastmnist` finds below ``data_root``."""
    return read_breastmnist(find_breastmnist(data_root))


def download_breastmnist(data_root: str | Path, url: str | None = None, force: bool = False,
                         progress: Callable[[int, int | None], None] | None = None) -> BreastMNIST:
    """Download the official file into ``<data_root>/breastmnist/``, verify its MD5, and read it.

    This is what ``breastdx data download breastmnist`` runs. The MD5 published by MedMNIST is checked
    before the file is moved into place (:func:`breastdx.data.download.download_dataset`); the arrays are
    then checked by :func:`read_breastmnist`.

    Args:
        data_root: The data root; created when missing.
        url: Another address of the same file (a mirror, or a ``file://`` URL); the MD5 still applies.
        force: Replace an existing ``<data_root>/breastmnist``.
        progress: Called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.

    Returns:
        The file, read and checked (its folder is ``result.path.parent``).

    Raises:
        breastdx.data.download.DownloadError: If the download fails, the MD5 differs (both are given), or
            the folder exists without ``force``.
        DataError: If the downloaded arrays fail the checks of :func:`read_breastmnist`.
    """
    from breastdx.data.download import download_dataset

    folder = download_dataset("breastmnist", data_root, url=url, force=force, progress=progress)
    return read_breastmnist(folder / BREASTMNIST_FILE)
