"""A labelled image folder from elsewhere (another hospital, another scanner), for external evaluation.

Two layouts are read:

* a ``labels.csv`` (the file itself, or a folder holding one) with columns ``image`` and ``label``, optional
  ``mask`` (one file, or several separated by ``;``), ``id`` and ``pixel_size_mm`` (mm per pixel, square pixels);
  paths are relative to the file's folder, and other columns are ignored. The file is UTF-8 (a byte-order mark
  allowed), its column names in any case, its cells separated by commas, or by semicolons or tabs as spreadsheets
  export them in some locales (then ``0,1`` is a decimal); errors name the file's line;
* class sub-folders in BUSI's layout, ``DIR/<class>/*.png``, where ``<stem>_mask.<ext>`` and ``<stem>_mask_<k>.<ext>``
  files are lesion masks of ``<stem>.<ext>``, not images; a sub-folder breastdx wrote (an earlier run's ``--out``,
  holding one of :data:`~breastdx.data.image_files.RUN_OUTPUT_FILES`) is no class, and a warning names it.

A case's lesion is the union of its mask files (as :func:`breastdx.data.busi.load_case` does for BUSI), read by
:func:`read_lesion_mask`: masks may be 1-bit, grey or colour-coded (BUS-UCLM: green benign, red malignant), and a
pixel is lesion when any colour channel is > 127 (:data:`MASK_THRESHOLD`). An image without a mask file has no lesion.

Only file names are read here: an image that cannot be decoded is left to the caller, which reports it and goes on.
:func:`label_indices` checks the labels against a model's classes and names every label outside them, with the file
and row (or folder) where it occurs.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np

from breastdx.data.errors import DataError
from breastdx.data.images import ImageReadError, read_mask_rgb
from breastdx.data.image_files import (IMAGE_SUFFIXES, RUN_OUTPUT_FILES, is_mask_name, list_images,
                                       visible_entries)

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
"""The table of a folder in the labels.csv layout."""
CLASS_FOLDERS = "class folders"
"""The layout of a folder of class sub-folders (:attr:`ExternalSet.layout`)."""
MASK_THRESHOLD = 127
"""A mask pixel is lesion when any of its colour channels (8-bit, after :func:`read_image`'s rules) is above this."""
MASK_SEPARATOR = ";"
"""Separates several mask files of one image in the ``mask`` column."""
TABLE_DELIMITERS = (",", ";", "\t")
"""Cell separators of a ``labels.csv``, the first under which the header names ``image`` and ``label`` being used."""
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


@dataclass(frozen=True)
class ExternalSet:
    """The cases of an external folder, in reading order.

    Attributes:
        source: The ``labels.csv`` read, or the folder of class sub-folders.
        layout: ``"labels.csv"`` or ``"class folders"``.
        ids: Case id per image (the ``id`` column, else the image path relative to the folder).
        labels: Class name per image, as written in the folder in lower case (``Malignant`` is ``malignant``;
            before any mapping).
        images: Image file per case.
        masks: Lesion mask file per case (the first one when there are several), or None.
        where: Where each case is declared in ``source`` (``row 3``, ``folder benign/``), for error messages.
        mask_sets: Every mask file per case (their union is the lesion); empty when not given (then ``masks``).
        pixel_size_mm: Pixel size in mm per case (the ``pixel_size_mm`` column), None where unknown; empty when
            the folder gives none.
    """

    source: Path
    layout: str
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    images: tuple[Path, ...]
    masks: tuple[Path | None, ...]
    where: tuple[str, ...]
    mask_sets: tuple[tuple[Path, ...], ...] = ()
    pixel_size_mm: tuple[float | None, ...] = ()

    def mask_files(self, i: int) -> tuple[Path, ...]:
        """The mask files of case ``i`` (none: no lesion)."""
        if self.mask_sets:
            return self.mask_sets[i]
        return () if self.masks[i] is None else (self.masks[i],)

    def spacing(self, i: int) -> tuple[float, float] | None:
        """``(row, col)`` pixel spacing in mm of case ``i``, or None."""
        size = self.pixel_size_mm[i] if self.pixel_size_mm else None
        return None if size is None else (size, size)

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
        DataError: If the table is not UTF-8, lacks a column or names one twice, has rows with too many cells or
            empty ones, or names an image or id twice (every such row named), or the folder has neither a
            ``labels.csv`` nor a class sub-folder with images.
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


def _table_rows(table: Path) -> list[tuple[int, dict[str, str]]]:
    """The rows of ``table`` as ``(row number, {column: cell})``, the header being row 1: column names stripped and
    in lower case (``Image`` is ``image``), cells stripped, a missing cell empty.

    Raises:
        DataError: If the file is not UTF-8 (the line named), lacks the ``image`` or ``label`` column, names a
            column twice, or has rows with more cells than the header has columns (every such row named).
    """
    raw = table.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{table}: not UTF-8 text (line {line}, byte {e.start}: {e.reason}); save the table as "
                        f"'CSV UTF-8' (file names and labels are read as UTF-8).") from None
    lines = text.splitlines(keepends=True)
    delimiter = next((d for d in TABLE_DELIMITERS if {"image", "label"} <= _names(lines[:1], d)), ",")
    reader = csv.reader(lines, delimiter=delimiter)
    header = [c.strip().lower() for c in next(reader, [])]
    missing = [c for c in ("image", "label") if c not in header]
    if missing:
        raise DataError(f"{table}: no column {' or '.join(repr(c) for c in missing)}; expected the columns "
                        f"'image' and 'label' (optional 'mask', 'id'), separated by commas. Found: "
                        f"{', '.join(header) or 'none'}.")
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if twice:
        raise DataError(f"{table}: the column(s) {', '.join(map(repr, twice))} appear more than once (names are "
                        f"read in lower case); give each column once.")
    rows, long_rows = [], []
    start = reader.line_num + 1
    for cells in reader:
        n, start = start, reader.line_num + 1  # the line the row begins on (a quoted cell may span lines)
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(cells) > len(header):
            long_rows.append(f"row {n}: {len(cells)} cells but the header has {len(header)} columns (a "
                             f"{_DELIMITER_NAMES[delimiter]} inside a cell needs the cell in double quotes)")
            continue
        rows.append((n, {c: v.strip() for c, v in zip(header, cells + [""] * (len(header) - len(cells)))}))
    if long_rows:
        raise DataError(f"{table}: {len(long_rows)} row(s) have more cells than the header has columns.", long_rows)
    return rows


def _names(header: list[str], delimiter: str) -> set[str]:
    """The column names of a header line split at ``delimiter`` (stripped, lower case)."""
    return {c.strip().lower() for c in next(csv.reader(header, delimiter=delimiter), [])}


def _read_table(table: Path) -> ExternalSet:
    root = table.parent
    rows = _table_rows(table)
    ids, labels, images, masks, where, problems = [], [], [], [], [], []
    mask_sets: list[tuple[Path, ...]] = []
    sizes: list[float | None] = []
    first_row: dict[object, int] = {}  # an image (or id) -> the row that named it first
    for n, row in rows:
        empty = [c for c in ("image", "label") if not row.get(c)]
        if empty:
            problems.append(f"row {n}: empty {' and '.join(empty)}")
            continue
        size = _pixel_size(row.get("pixel_size_mm", ""))
        if size is not None and not size > 0:
            problems.append(f"row {n}: pixel_size_mm {row['pixel_size_mm']!r} is not a positive number")
            continue
        image = root / row["image"]
        repeated = []
        case_id = row.get("id")
        for what, value, key in (("image", row["image"], image.resolve()), ("id", case_id, ("id", case_id))):
            first = first_row.setdefault(key, n) if value else n
            if first != n:
                repeated.append(f"{what} {value!r} is that of row {first}")
        if repeated:  # one case scored twice would count twice in every figure
            problems.append(f"row {n}: {' and '.join(repeated)}; each case is one row")
            continue
        files = tuple(root / m.strip() for m in row.get("mask", "").split(MASK_SEPARATOR) if m.strip())
        ids.append(row.get("id") or row["image"])
        labels.append(row["label"].lower())
        images.append(image)
        masks.append(files[0] if files else None)
        mask_sets.append(files)
        sizes.append(size)
        where.append(f"row {n}")
    if problems:
        raise DataError(f"{table}: {len(problems)} row(s) cannot be used; every row needs an image and a label, "
                        f"and names an image (and id) of its own.", problems)
    if not ids:
        raise DataError(f"{table}: no rows; expected one row per image with the columns 'image' and 'label'.")
    return ExternalSet(table, LABELS_FILE, tuple(ids), tuple(labels), tuple(images), tuple(masks), tuple(where),
                       tuple(mask_sets), tuple(sizes) if any(x is not None for x in sizes) else ())


def _pixel_size(text: str) -> float | None:
    """The ``pixel_size_mm`` cell: None when empty, NaN when not a number; a decimal comma (``0,1``, as a
    spreadsheet writes it in many locales) is a decimal point."""
    if not text:
        return None
    try:
        return float(text.replace(",", ".") if text.count(",") == 1 and "." not in text else text)
    except ValueError:
        return float("nan")


def _read_class_folders(folder: Path) -> ExternalSet:
    ids, labels, images, masks, where = [], [], [], [], []
    mask_sets: list[tuple[Path, ...]] = []
    first: dict[Path, str] = {}  # a file (links resolved) -> where it was met first
    repeated, stray, runs = [], [], []
    for sub in visible_entries(folder):
        if not sub.is_dir():
            if sub.suffix.lower() in IMAGE_SUFFIXES and not is_mask_name(sub):
                stray.append(sub.name)  # beside the class folders: no label
            continue
        if any((sub / name).is_file() for name in RUN_OUTPUT_FILES):  # an earlier run's --out: its plots are no class
            runs.append(sub.name + "/")
            continue
        found: dict[tuple[Path, str], list[tuple[int, str, Path]]] = {}  # (folder, stem) -> (k, suffix, mask)
        listed = list_images([sub], exclude_masks=False)  # once: it warns of the files it does not read
        for f in listed:
            m = _MASK_FILE.match(f.stem)
            if m:
                found.setdefault((f.parent, m["stem"]), []).append((int(m["k"] or 0), f.suffix, f))
        for image in [f for f in listed if not is_mask_name(f)]:
            candidates = found.get((image.parent, image.stem), [])
            same = [c for c in candidates if c[1] == image.suffix]  # c1.png's masks; else c1.jpg's PNG masks
            files = tuple(p for _, _, p in sorted(same or candidates))
            key, place = image.resolve(), str(image.relative_to(folder))
            if key in first:  # one file scored twice (a copy by link, or under two labels) counts twice
                repeated.append(f"{place} is {first[key]} again")
                continue
            first[key] = place
            ids.append(place)
            labels.append(sub.name.lower())
            images.append(image)
            masks.append(files[0] if files else None)
            mask_sets.append(files)
            where.append(f"folder {sub.name}/")
    if runs:
        logger.warning("%s: %d sub-folder(s) hold breastdx's own output (%s: an earlier run's --out), not a class, and "
                       "are not scored: %s", folder, len(runs), ", ".join(RUN_OUTPUT_FILES), ", ".join(runs))
    if repeated:
        raise DataError(f"{folder}: {len(repeated)} image(s) appear more than once (links to one file); each case "
                        f"is one image, under one label.", repeated)
    if not ids:
        raise DataError(f"{folder}: neither a {LABELS_FILE} nor class sub-folders with images (expected "
                        f"{folder}/{LABELS_FILE}, or {folder}/<class>/*.png as in BUSI).")
    if stray:
        logger.warning("%s: %d image(s) beside the class folders are not in one, so have no label and are not "
                       "scored: %s", folder, len(stray), ", ".join(stray[:5]) + (", ..." if len(stray) > 5 else ""))
    return ExternalSet(folder, CLASS_FOLDERS, tuple(ids), tuple(labels), tuple(images), tuple(masks), tuple(where),
                       tuple(mask_sets))


_MASK_FILE = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<k>\d+))?$", re.IGNORECASE)


def read_lesion_mask(paths: Sequence[str | Path], shape: tuple[int, int]) -> np.ndarray:
    """The lesion of an image: the union of its mask files, a pixel being lesion when any channel is > 127.

    Each file is read by :func:`breastdx.data.images.read_mask_rgb` as 8-bit RGB (1-bit becomes {0, 255}, palettes
    are looked up, 16-bit is rescaled, grey is repeated, transparency is composited on black, a mask drawn as
    transparency alone is read from its alpha), so 1-bit, grey and colour-coded masks (a red or green lesion on
    black) all work, and JPEG noise below 128 is not lesion.

    Args:
        paths: The mask files; none gives an empty mask (an image without a lesion).
        shape: ``(H, W)`` of the image.

    Returns:
        bool ``(H, W)``.

    Raises:
        ImageReadError: If a file cannot be read, or its size differs from ``shape`` (both sizes named).
    """
    mask = np.zeros(tuple(shape), dtype=bool)
    for path in paths:
        rgb = read_mask_rgb(path)
        if rgb.shape[:2] != tuple(shape):
            raise ImageReadError(f"{path}: mask is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but its image is "
                                 f"{shape[0]}x{shape[1]}; a mask must have the size of its image.")
        mask |= (rgb > MASK_THRESHOLD).any(axis=-1)
    return mask


def failure_lines(failures: Sequence[tuple[str, str]]) -> list[str]:
    """``"<file>: <reason>"`` per case left out, the file named once where its reason begins with it already."""
    return [reason if reason.startswith(f"{item}: ") else f"{item}: {reason}" for item, reason in failures]


def identical_images(ids: Sequence[str], hashes: Sequence[str]) -> list[list[str]]:
    """The cases of a folder whose images hold the same pixels under other names (a copy, not a link: links are
    refused by :func:`read_external`).

    Args:
        ids: The case ids.
        hashes: Per case, :func:`breastdx.data.checksum.image_hash` of its decoded image, as scored.

    Returns:
        Groups of two or more ids, each in folder order, the groups in the order of their first case; empty when
        every image is unique.
    """
    groups: dict[str, list[str]] = {}
    for case, digest in zip(ids, hashes, strict=True):
        groups.setdefault(digest, []).append(case)
    return [g for g in groups.values() if len(g) > 1]


def identical_note(groups: Sequence[Sequence[str]]) -> str | None:
    """What a report says of :func:`identical_images`' groups (None when there are none); also logged as a
    warning, for each copy is scored as one more case and narrows the intervals as if it were independent."""
    if not groups:
        return None
    shown = "; ".join(" = ".join(g) for g in groups[:5]) + ("; ..." if len(groups) > 5 else "")
    note = (f"Warning: {sum(len(g) - 1 for g in groups)} image(s) are pixel-for-pixel copies of another case of "
            f"this folder ({shown}); each copy is scored as a case of its own, and the intervals count it as "
            f"independent. Remove the copies for an honest figure.")
    logger.warning("%s", note)
    return note


def mask_peak(paths: Sequence[str | Path]) -> int:
    """The highest 8-bit channel value in the mask files (as :func:`read_lesion_mask` reads them): a mask with
    values but none over :data:`MASK_THRESHOLD` is a 0/1 (or faint) label map, not an empty outline."""
    return max((int(read_mask_rgb(p).max()) for p in paths), default=0)


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
    unused = sorted(set(label_map) - set(data.labels))
    if unused:
        logger.warning("the label map's %s match no image of %s (its labels: %s)", ", ".join(map(repr, unused)),
                       data.source, ", ".join(dict.fromkeys(data.labels)))
    mapped = [label_map.get(label, label) for label in data.labels]
    unknown: dict[str, list[str]] = {}
    for label, was, place in zip(mapped, data.labels, data.where):
        if label not in index:
            unknown.setdefault(was, []).append(place)
    if unknown:
        problems = [f"{label!r}: {len(places)} image(s) ({', '.join(dict.fromkeys(places[:3]))}"
                    f"{', ...' if len(set(places)) > 3 else ''})"
                    for label, places in unknown.items()]
        folders = ""  # class folders: a folder that holds no class (thumbnails/) is left out by moving it
        if data.layout == CLASS_FOLDERS:
            folders = " ".join(dict.fromkeys(p.removeprefix("folder ") for v in unknown.values() for p in v))
            folders = (f"; or, for a folder that is not a class, move the folder(s) {folders} out of {data.source} "
                       f"(or list the cases to score in a {LABELS_FILE})")
        raise DataError(f"{data.source}: label(s) {', '.join(repr(k) for k in unknown)} are not classes of the model "
                        f"({', '.join(class_names)}); nothing is mapped unless declared (--label-map "
                        f"'label=class,...'){folders}.", problems)
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
        label = label.lower()  # as the folder's labels are read
        if label in out and out[label] != cls:
            raise DataError(f"The label map sends {label!r} to {out[label]!r} and to {cls!r}; give each label once.")
        out[label] = cls
    return out


def check_external_options(opts: Any) -> None:
    """Refuse, with ``--external``, the options that choose cases of a split (``--split-file``, ``--max-cases``, a
    ``--split`` other than its default): the whole folder is scored, and they would be recorded as if they applied.

    Raises:
        ConfigError: Naming the options given.
    """
    from breastdx.config import ConfigError, given_options

    given = given_options(opts, ("split_file", "max_cases", "split"))
    if given:
        raise ConfigError(f"--external scores the whole folder {opts.external}; {' and '.join(given)} "
                          f"{'chooses' if len(given) == 1 else 'choose'} cases of a split and cannot be given with it.")
