"""BUSI: the Breast Ultrasound Images dataset (780 images, normal / benign / malignant, with lesion masks).

Layout read here, the public release's (``Dataset_BUSI_with_GT/``) and the data root's (``<root>/busi/``)::

    <class>/<class> (<n>).png            the image (RGB in the release; gray or RGB in <root>/busi)
    <class>/<class> (<n>)_mask.png       the lesion mask
    <class>/<class> (<n>)_mask_<k>.png   further masks of the same image (several lesions): the lesion
                                         mask is the union of all of them

Normal images have an all-empty mask. Counts of the release: normal 133, benign 437, malignant 210 images;
17 images have more than one mask (18 extra mask files: ``benign (195)`` has three). Known defects (see
:mod:`breastdx.data.duplicates` and :func:`breastdx.data.splits.busi_split`): ``benign (433)`` and
``malignant (145)`` are the same image, and many images are near-duplicates (frames of one lesion), some across
classes.

References:
    Al-Dhabyani, W., Gomaa, M., Khaled, H. & Fahmy, A. (2020). Dataset of breast ultrasound images.
    Data in Brief 28:104863. doi:10.1016/j.dib.2019.104863
    Pawłowska, A. et al. (2023). Curated benchmark dataset for ultrasound based breast lesion analysis
    (duplicates in BUSI). Data in Brief. doi:10.1016/j.dib.2023.109247
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastdx.data.checksum import sha256_file, sha256_listing
from breastdx.data.errors import DataError
from breastdx.data.images import read_image, read_mask
from breastdx.data.image_files import visible_entries

logger = logging.getLogger(__name__)

BUSI_CLASSES = ("normal", "benign", "malignant")
"""Class names in index order for classification; malignant is the positive class."""

BUSI_FOLDER = "busi"
"""Name of BUSI's folder below the data root."""

RELEASE_FOLDER = "Dataset_BUSI_with_GT"
"""Name of the class folders' parent in the public release."""

RELEASE_IMAGES = 780
"""Images (cases) of the public release: 133 normal, 437 benign, 210 malignant."""

CITATION = "Al-Dhabyani et al. 2020, Data in Brief 28:104863, doi:10.1016/j.dib.2019.104863"
"""The dataset's article."""


def data_card_line(n_images: int, contents: str = "") -> str:
    """The first line of a model card's Data section for images read in BUSI's layout.

    Args:
        n_images: Cases found (train + val + test + excluded of the split).
        contents: Said of the release after its origin, e.g. ``"; normal / benign / malignant with expert
            lesion masks"``.

    Returns:
        A Markdown list item: the release described when there are :data:`RELEASE_IMAGES` cases, else the
        count, with the statement that these are not the release (a part of it, or a user's own data in its
        layout), whose origin the card cannot state.
    """
    if n_images == RELEASE_IMAGES:
        return (f"- BUSI, Breast Ultrasound Images ({CITATION}): 780 images of 600 women, Baheya Hospital, Cairo, "
                f"2018{contents} (CC BY 4.0).")
    return (f"- {n_images} images in BUSI's folder layout, not the {RELEASE_IMAGES} of the BUSI release ({CITATION}): "
            f"a part of it or other data, whose origin is the data owner's to state.")

_NAME = re.compile(r"^(?P<label>[a-z]+) \((?P<n>\d+)\)(?P<mask>_mask(?:_(?P<k>\d+))?)?\.png$")


@dataclass(frozen=True)
class BusiCase:
    """One BUSI image and its mask files.

    Attributes:
        name: Case name, the image's file stem, e.g. ``"benign (12)"``.
        label: ``"normal"``, ``"benign"`` or ``"malignant"``.
        image: The image file.
        masks: The mask files, ``_mask`` first then ``_mask_1``, ``_mask_2``...; the lesion is their union.
    """

    name: str
    label: str
    image: Path
    masks: tuple[Path, ...]

    @property
    def number(self) -> int:
        """The ``n`` of ``"<class> (n)"``."""
        return int(self.name.rsplit("(", 1)[1].rstrip(")"))

    @property
    def label_index(self) -> int:
        """Index of :attr:`label` in :data:`BUSI_CLASSES`."""
        return BUSI_CLASSES.index(self.label)


def _has_classes(folder: Path) -> bool:
    return all((folder / c).is_dir() for c in BUSI_CLASSES)


def find_busi_root(data_root: str | Path) -> Path:
    """The folder that holds BUSI's class folders.

    Looks at ``data_root/busi``, then ``data_root`` itself, then ``data_root/Dataset_BUSI_with_GT``
    (the public release unpacked as is), and returns the first that holds ``normal/``, ``benign/`` and
    ``malignant/``.

    Args:
        data_root: The data root (or a BUSI folder itself).

    Returns:
        The BUSI folder.

    Raises:
        DataError: If none of those holds the three class folders; the message says where it looked and
            how to get the data.
    """
    data_root = Path(data_root)
    candidates = [data_root / BUSI_FOLDER, data_root, data_root / RELEASE_FOLDER]
    for c in candidates:
        if _has_classes(c):
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"BUSI not found: none of {looked} holds the class folders {', '.join(BUSI_CLASSES)}. "
        f"Download it with `breastdx data download busi` (into <data root>/{BUSI_FOLDER}), or point the data "
        f"root (--data-dir or BREASTDX_DATA) at a folder that holds {BUSI_FOLDER}/."
    )


def scan_busi(root: str | Path) -> list[BusiCase]:
    """List BUSI's cases from the class folders of ``root``, checking that images and masks pair up.

    Hidden files (names starting with ``.``) are ignored; every other file must be named
    ``<class> (<n>).png`` or ``<class> (<n>)_mask[_<k>].png`` with ``<class>`` its folder's name.

    Args:
        root: A folder with ``normal/``, ``benign/`` and ``malignant/`` (see :func:`find_busi_root`).

    Returns:
        The cases sorted by ``(label, n)``.

    Raises:
        DataError: Listing every problem: missing class folders, unexpected file names, two images of one case
            number (``benign (1).png`` and ``benign (01).png``), images without masks, masks without images.
    """
    root = Path(root)
    problems: list[str] = []
    images: dict[str, tuple[str, int, Path]] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for label in BUSI_CLASSES:
        folder = root / label
        if not folder.is_dir():
            problems.append(f"{folder}: missing class folder")
            continue
        for f in visible_entries(folder):
            m = _NAME.match(f.name)
            if m is None or not f.is_file():
                problems.append(f"{f}: unexpected {'folder' if f.is_dir() else 'file'}; expected "
                                f"'{label} (<n>).png' or '{label} (<n>)_mask[_<k>].png'")
                continue
            if m["label"] != label:
                problems.append(f"{f}: named as class {m['label']!r} but stored in the {label!r} folder")
                continue
            name = f"{label} ({int(m['n'])})"
            if m["mask"]:
                masks.setdefault(name, []).append((int(m["k"] or 0), f))
            elif name in images:  # "benign (01).png" beside "benign (1).png": one case, two images
                problems.append(f"{f}: a second image of case {name!r} (the first is {images[name][2].name}); "
                                f"expected one image per case number")
            else:
                images[name] = (label, int(m["n"]), f)
    for name in sorted(set(images) - set(masks)):
        problems.append(f"{images[name][2]}: image without a mask (expected {name}_mask.png beside it)")
    for name in sorted(set(masks) - set(images)):
        for _, f in masks[name]:
            problems.append(f"{f}: mask without an image (expected {name}.png beside it)")
    if problems:
        raise DataError(f"{root}: not a valid BUSI folder.", problems)
    if not images:
        raise DataError(f"{root}: the BUSI class folders hold no images.")
    cases = [
        BusiCase(name, label, path, tuple(p for _, p in sorted(masks[name])))
        for name, (label, _, path) in images.items()
    ]
    cases.sort(key=lambda c: (c.label, c.number))
    return cases


def load_busi(data_root: str | Path) -> list[BusiCase]:
    """:func:`scan_busi` on the folder :func:`find_busi_root` finds below ``data_root``."""
    return scan_busi(find_busi_root(data_root))


def load_case(case: BusiCase, mode: str = "gray") -> tuple[np.ndarray, np.ndarray]:
    """Read a case's image and the union of its masks.

    Args:
        case: The case.
        mode: ``"gray"`` or ``"rgb"`` (see :func:`breastdx.data.images.read_image`).

    Returns:
        ``(image, mask)``: ``uint8`` image and ``bool`` lesion mask (all False for normal cases).

    Shape:
        image: ``(H, W)`` or ``(H, W, 3)``; mask: ``(H, W)``.

    Raises:
        ImageReadError: If a file cannot be read or a mask's size differs from the image's.
    """
    image = read_image(case.image, mode=mode).array
    mask = np.zeros(image.shape[:2], dtype=bool)
    for m in case.masks:
        mask |= read_mask(m, expected_shape=image.shape[:2])
    return image, mask


def busi_checksum(cases: list[BusiCase]) -> str:
    """Checksum of a BUSI folder: SHA-256 over ``(relative path, SHA-256 of the file)`` of images and masks.

    Paths are relative to the class folders' parent (``"benign/benign (1).png"``), so the checksum does not
    depend on where the data lie, only on the files' names and bytes.

    Args:
        cases: From :func:`scan_busi`.

    Returns:
        Hex SHA-256.
    """
    items = []
    for case in cases:
        for f in (case.image, *case.masks):
            items.append((f"{f.parent.name}/{f.name}", sha256_file(f)))
    return sha256_listing(items)


def class_counts(cases: list[BusiCase]) -> dict[str, int]:
    """Number of cases per class, in :data:`BUSI_CLASSES` order."""
    return {c: sum(1 for case in cases if case.label == c) for c in BUSI_CLASSES}
