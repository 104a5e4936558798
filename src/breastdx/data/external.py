"""A labelled image folder from elsewhere (another hospital, another scanner), for external evaluation.

Two layouts are read:

* a ``labels.csv`` (the file itself, or a folder holding one) with columns ``image`` and ``label``, optional
  ``mask`` and ``id``; paths are relative to the file's folder, and other columns are ignored;
* class sub-folders in BUSI's layout, ``DIR/<class>/*.png``, where ``*_mask.png`` and ``*_mask_<k>.png`` files are
  lesion masks (the first, ``<stem>_mask.<ext>``, is kept as the image's mask), not images.

Only file names are read here: an image that cannot be decoded is left to the caller, which reports it and goes on.
:func:`label_indices` checks the labels against a model's classes and names every label outside them, with the file
and row (or folder) where it occurs.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastdx.data.errors import DataError
from breastdx.data.images import list_images, visible_entries

LABELS_FILE = "labels.csv"
"""The table of a folder in the labels.csv layout."""


@dataclass(frozen=True)
class ExternalSet:
    """The cases of an external folder, in reading order.

    Attributes:
        source: The ``labels.csv`` read, or the folder of class sub-folders.
        layout: ``"labels.csv"`` or ``"class folders"``.
        ids: Case id per image (the ``id`` column, else the image path relative to the folder).
        labels: Class name per image, as written in the folder (before any mapping).
        images: Image file per case.
        masks: Lesion mask file per case, or None.
        where: Where each case is declared in ``source`` (``row 3``, ``folder benign/``), for error messages.
    """

    source: Path
    layout: str
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    images: tuple[Path, ...]
    masks: tuple[Path | None, ...]
    where: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def counts(self) -> dict[str, int]:
        """Images per label, in order of first appearance."""
        out: dict[str, int] = {}
        for label in self.labels:
            out[label] = out.get(label, 0) + 1
        return out

    def describe(self) -> str:
        """``"external folder /data/x (labels.csv; n = 56: 30 benign, 22 malignant, 4 normal)"``."""
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts().items()))
        return f"external folder {self.source} ({self.layout}; n = {len(self)}: {counts})"


def read_external(path: str | Path) -> ExternalSet:
    """Read the cases of an external folder (either layout of the module docstring).

    Args:
        path: A ``labels.csv``, a folder holding one, or a folder of class sub-folders.

    Returns:
        The cases; image files are not opened.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        DataError: If the table lacks a column or has empty cells (every such row named), or the folder has
            neither a ``labels.csv`` nor a class sub-folder with images.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder (expected a {LABELS_FILE} or a folder of class "
                                f"sub-folders).")
    if path.is_file():
        return _read_table(path)
    if (path / LABELS_FILE).is_file():
        return _read_table(path / LABELS_FILE)
    return _read_class_folders(path)


def _read_table(table: Path) -> ExternalSet:
    root = table.parent
    with open(table, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("image", "label") if c not in columns]
        if missing:
            raise DataError(f"{table}: no column {' or '.join(repr(c) for c in missing)}; expected the columns "
                            f"'image' and 'label' (optional 'mask', 'id'). Found: {', '.join(columns) or 'none'}.")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    ids, labels, images, masks, where, problems = [], [], [], [], [], []
    for n, row in enumerate(rows, start=2):  # row 1 is the header
        empty = [c for c in ("image", "label") if not row.get(c)]
        if empty:
            problems.append(f"row {n}: empty {' and '.join(empty)}")
            continue
        image = root / row["image"]
        ids.append(row.get("id") or row["image"])
        labels.append(row["label"])
        images.append(image)
        masks.append(root / row["mask"] if row.get("mask") else None)
        where.append(f"row {n}")
    if problems:
        raise DataError(f"{table}: {len(problems)} row(s) cannot be used; every row needs an image and a label.",
                        problems)
    if not ids:
        raise DataError(f"{table}: no rows; expected one row per image with the columns 'image' and 'label'.")
    return ExternalSet(table, LABELS_FILE, tuple(ids), tuple(labels), tuple(images), tuple(masks), tuple(where))


def _read_class_folders(folder: Path) -> ExternalSet:
    ids, labels, images, masks, where = [], [], [], [], []
    for sub in visible_entries(folder):
        if not sub.is_dir():
            continue
        for image in list_images([sub]):
            mask = image.with_name(f"{image.stem}_mask{image.suffix}")
            ids.append(str(image.relative_to(folder)))
            labels.append(sub.name)
            images.append(image)
            masks.append(mask if mask.is_file() else None)
            where.append(f"folder {sub.name}/")
    if not ids:
        raise DataError(f"{folder}: neither a {LABELS_FILE} nor class sub-folders with images (expected "
                        f"{folder}/{LABELS_FILE}, or {folder}/<class>/*.png as in BUSI).")
    return ExternalSet(folder, "class folders", tuple(ids), tuple(labels), tuple(images), tuple(masks), tuple(where))


def label_indices(data: ExternalSet, class_names: Sequence[str],
                  label_map: Mapping[str, str] | None = None) -> np.ndarray:
    """Class index of every case, after the declared ``label_map``; nothing else is mapped.

    Args:
        data: The cases.
        class_names: The model's classes, in index order.
        label_map: Folder label to model class (e.g. ``{"benign": "normal_or_benign"}``), given by the user.

    Returns:
        int64 ``(n,)``.

    Raises:
        DataError: If a label is not one of ``class_names`` after the mapping, or the mapping names a class the
            model does not have; every such label is named, with the count and the first places it occurs.
    """
    label_map = dict(label_map or {})
    index = {c: k for k, c in enumerate(class_names)}
    wrong_targets = sorted({v for v in label_map.values() if v not in index})
    if wrong_targets:
        raise DataError(f"The label map names {', '.join(repr(c) for c in wrong_targets)}, not a class of the model "
                        f"({', '.join(class_names)}).")
    mapped = [label_map.get(label, label) for label in data.labels]
    unknown: dict[str, list[str]] = {}
    for label, was, place in zip(mapped, data.labels, data.where):
        if label not in index:
            unknown.setdefault(was, []).append(place)
    if unknown:
        problems = [f"{label!r}: {len(places)} image(s) ({', '.join(dict.fromkeys(places[:3]))}"
                    f"{', ...' if len(set(places)) > 3 else ''})"
                    for label, places in unknown.items()]
        raise DataError(f"{data.source}: label(s) {', '.join(repr(k) for k in unknown)} are not classes of the model "
                        f"({', '.join(class_names)}); nothing is mapped unless declared (--label-map "
                        f"'label=class,...').", problems)
    return np.asarray([index[label] for label in mapped], dtype=np.int64)


def parse_label_map(entries: Sequence[str]) -> dict[str, str]:
    """``("benign=normal_or_benign", "normal=normal_or_benign")`` -> ``{"benign": ..., "normal": ...}``.

    Raises:
        DataError: If an entry is not ``label=class``.
    """
    out: dict[str, str] = {}
    bad = [e for e in entries if e.count("=") != 1 or not all(s.strip() for s in e.split("="))]
    if bad:
        raise DataError(f"The label map must be 'label=class' entries, comma-separated. Got {', '.join(map(repr, bad))}.")
    for e in entries:
        label, cls = (s.strip() for s in e.split("="))
        out[label] = cls
    return out
