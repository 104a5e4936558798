"""BreakHis: 7,909 H&E images (700 x 460) of breast tumours from 82 patients, at 40x, 100x, 200x and 400x.

Every BreakHis file name carries its labels::

    SOB_B_A-14-22549AB-40-001.png
    |   | |  |  |       |  +-- image number within the patient and magnification
    |   | |  |  |       +----- magnification: 40, 100, 200 or 400
    |   | |  |  +------------- patient (slide) id
    |   | |  +---------------- year of the biopsy, two digits
    |   | +------------------- tumour subtype (table below)
    |   +--------------------- tumour class: B = benign, M = malignant
    +------------------------- procedure: SOB = surgical open biopsy

======  ===========  ======================
code    class        subtype
======  ===========  ======================
A       benign       adenosis
F       benign       fibroadenoma
PT      benign       phyllodes tumour
TA      benign       tubular adenoma
DC      malignant    ductal carcinoma
LC      malignant    lobular carcinoma
MC      malignant    mucinous carcinoma
PC      malignant    papillary carcinoma
======  ===========  ======================

:func:`parse_breakhis_name` turns a name into a :class:`BreakHisName` and refuses a name off the
convention with a message naming the file and the part that is wrong. :func:`read_breakhis_folder`
reads a folder tree (the release's ``BreaKHis_v1/histology_slides/breast/...`` or any other) and checks
each name against the ``benign``/``malignant`` and ``<mag>X`` folders it lies in. The patient is the leading
number of the slide id (``22549`` for ``22549AB``; :attr:`BreakHisName.patient_id`) whatever the subtype, so
images of one patient filed under two subtypes or two slides (``29960AB`` fibroadenoma, ``29960CD`` adenosis)
stay in one group; :func:`breastdx.data.patch_split.make_patch_split` splits by it.

Only 12 sample images are available in this project's data (``breakhis_samples/``, all 8 subtypes,
one patient at all 4 magnifications): a format fixture, not a training set.

References:
    Spanhol, F. A., Oliveira, L. S., Petitjean, C. & Heutte, L. (2016). A dataset for breast cancer
    histopathological image classification. IEEE Trans Biomed Eng 63(7):1455-1462.
    doi:10.1109/TBME.2015.2496264
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastdx.data.errors import DataError
from breastdx.data.patches import PATCH_DATASETS, FilePatchSource

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("benign", "malignant")
"""Class names in label order: 0 = benign, 1 = malignant."""

SUBTYPES: dict[str, tuple[str, str]] = {
    "A": ("benign", "adenosis"),
    "F": ("benign", "fibroadenoma"),
    "PT": ("benign", "phyllodes tumour"),
    "TA": ("benign", "tubular adenoma"),
    "DC": ("malignant", "ductal carcinoma"),
    "LC": ("malignant", "lobular carcinoma"),
    "MC": ("malignant", "mucinous carcinoma"),
    "PC": ("malignant", "papillary carcinoma"),
}
"""Subtype code to ``(class, subtype name)``."""

SUBTYPE_CLASS_NAMES: tuple[str, ...] = tuple(f"{cls}/{name.replace(' ', '_')}" for cls, name in SUBTYPES.values())
"""The 8 subtypes as class names ``"<class>/<subtype>"`` in :data:`SUBTYPES` order (benign first): a group of
classes for :func:`breastdx.evaluation.classification.positive_columns`, so ``malignant`` is the sum of the four
malignant subtypes."""

LABELS = ("binary", "subtype")
"""What a label is: ``binary`` (:data:`CLASS_NAMES`) or ``subtype`` (:data:`SUBTYPE_CLASS_NAMES`)."""

MAGNIFICATIONS: tuple[int, ...] = (40, 100, 200, 400)
"""Objective magnifications of the release."""

BREAKHIS_FOLDERS = ("breakhis", "BreaKHis_v1", "breakhis_224", "breakhis_samples")
"""Folders below the data root looked at, in this order (the last is a 12-image fixture)."""

IMAGE_SUFFIXES = (".png",)
"""File endings of BreakHis images (any case); other files in the tree are ignored."""

DERIVED_SUFFIXES = (".jpg", ".jpeg", ".png")
"""File endings of the derived copy's images (``SOBderived_...``)."""

_DERIVED = re.compile(r"^SOBderived_(?P<cls>[BM])_(?P<subtype>[A-Z]+)_(?P<slide>[0-9A-Za-z]+)_(?P<mag>\d+)X_i(?P<n>\d+)$")
_DERIVED_CONVENTION = "SOBderived_<B|M>_<subtype>_<slide id>_<magnification>X_i<n>.jpg (e.g. SOBderived_B_F_29960AB_200X_i003.jpg)"

_CLASS_CODE = {"B": "benign", "M": "malignant"}
_CONVENTION = "SOB_<B|M>_<subtype>-<year>-<patient>-<magnification>-<n>.png (e.g. SOB_B_A-14-22549AB-40-001.png)"
_MAG_FOLDER = re.compile(r"^(\d+)[xX]$")


class BreakHisNameError(DataError):
    """A file name that does not follow the BreakHis convention; the message names the file and the part."""


@dataclass(frozen=True)
class BreakHisName:
    """The labels a BreakHis file name carries.

    Attributes:
        filename: The file name parsed.
        tumour_class: ``"benign"`` or ``"malignant"``.
        subtype: Subtype code (``"A"``, ``"F"``, ``"PT"``, ``"TA"``, ``"DC"``, ``"LC"``, ``"MC"``, ``"PC"``).
        year: Two-digit year of the biopsy, as written (``"14"``).
        patient: Patient (slide) id as written (``"22549AB"``).
        magnification: 40, 100, 200 or 400.
        number: Image number within the patient and magnification.
    """

    filename: str
    tumour_class: str
    subtype: str
    year: str
    patient: str
    magnification: int
    number: int

    @property
    def label(self) -> int:
        """0 = benign, 1 = malignant (index into :data:`CLASS_NAMES`)."""
        return CLASS_NAMES.index(self.tumour_class)

    @property
    def subtype_name(self) -> str:
        """The subtype spelled out (``"fibroadenoma"``)."""
        return SUBTYPES[self.subtype][1]

    @property
    def patient_id(self) -> str:
        """The leading number of the slide id (``"22549"`` for ``22549AB`` and ``22549CD``): the group used for
        patient-level splits. Slide ids that share it are one patient (two slides of one biopsy), so grouping by the
        whole slide id would put one patient on both sides of a split."""
        digits = re.match(r"\d+", self.patient)
        return digits.group(0) if digits else self.patient


def parse_breakhis_name(path: str | Path) -> BreakHisName:
    """Parse a BreakHis file name (only the name is used; the folders are not looked at).

    Args:
        path: A path or bare file name, e.g. ``"SOB_M_DC-14-2523-40-010.png"``.

    Returns:
        A :class:`BreakHisName`.

    Raises:
        BreakHisNameError: If the name does not follow
            ``SOB_<B|M>_<subtype>-<year>-<patient>-<magnification>-<n>.png``; the message names the file
            and what is wrong (procedure, class, subtype, subtype of the other class, year, patient,
            magnification, number, suffix).
    """
    name = Path(path).name

    def fail(reason: str) -> BreakHisNameError:
        return BreakHisNameError(f"{path}: not a BreakHis file name: {reason}; expected {_CONVENTION}.")

    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        raise fail(f"suffix {Path(name).suffix or '(none)'!r} is not .png")
    stem = name[: -len(Path(name).suffix)]
    head = stem.split("_", 2)
    if len(head) != 3:
        raise fail("expected three parts separated by '_'")
    procedure, cls, rest = head
    if procedure != "SOB":
        raise fail(f"procedure {procedure!r} is not 'SOB'")
    if cls not in _CLASS_CODE:
        raise fail(f"class {cls!r} is not B (benign) or M (malignant)")
    parts = rest.split("-")
    if len(parts) != 5:
        raise fail(f"{rest!r} has {len(parts)} parts separated by '-', expected 5 "
                   f"(subtype, year, patient, magnification, number)")
    subtype, year, patient, mag, number = parts
    if subtype not in SUBTYPES:
        raise fail(f"unknown subtype {subtype!r} (known: {', '.join(SUBTYPES)})")
    if SUBTYPES[subtype][0] != _CLASS_CODE[cls]:
        raise fail(f"subtype {subtype} ({SUBTYPES[subtype][1]}) is {SUBTYPES[subtype][0]} but the class code "
                   f"says {cls} ({_CLASS_CODE[cls]})")
    if not re.fullmatch(r"\d{2}", year):
        raise fail(f"year {year!r} is not two digits")
    if not re.fullmatch(r"[0-9A-Za-z]+", patient):
        raise fail(f"patient id {patient!r} is not letters and digits")
    if not mag.isdigit() or int(mag) not in MAGNIFICATIONS:
        raise fail(f"magnification {mag!r} is not one of {', '.join(map(str, MAGNIFICATIONS))}")
    if not number.isdigit():
        raise fail(f"image number {number!r} is not digits")
    return BreakHisName(name, _CLASS_CODE[cls], subtype, year, patient, int(mag), int(number))


def parse_breakhis_derived_name(path: str | Path) -> BreakHisName:
    """Parse a file name of the derived 224 x 224 copy (``../shared/data/breakhis_224``, PROVENANCE.md there).

    Its names keep the class, subtype, slide id and magnification but not the year or the BreakHis image number
    (``i<n>`` is the image's index in the source file); the year is given as ``""``.

    Raises:
        BreakHisNameError: If the name does not follow ``SOBderived_<B|M>_<subtype>_<slide>_<mag>X_i<n>.jpg``, or
            its subtype and class disagree; the message names the file.
    """
    name = Path(path).name
    m = _DERIVED.match(Path(name).stem)
    if m is None or Path(name).suffix.lower() not in DERIVED_SUFFIXES:
        raise BreakHisNameError(f"{path}: not a derived BreakHis file name; expected {_DERIVED_CONVENTION}.")
    cls, subtype, mag = _CLASS_CODE[m["cls"]], m["subtype"], int(m["mag"])
    if subtype not in SUBTYPES or SUBTYPES[subtype][0] != cls:
        raise BreakHisNameError(f"{path}: subtype {subtype!r} is not a {cls} BreakHis subtype "
                                f"({', '.join(k for k, v in SUBTYPES.items() if v[0] == cls)}).")
    if mag not in MAGNIFICATIONS:
        raise BreakHisNameError(f"{path}: magnification {mag} is not one of {', '.join(map(str, MAGNIFICATIONS))}.")
    return BreakHisName(name, cls, subtype, "", m["slide"], mag, int(m["n"]))


def _folder_problems(path: Path, root: Path, parsed: BreakHisName) -> list[str]:
    """Disagreements between the name and the ``benign``/``malignant`` and ``<mag>X`` folders above it."""
    out = []
    for part in path.relative_to(root).parts[:-1]:
        low = part.lower()
        if low in CLASS_NAMES and low != parsed.tumour_class:
            out.append(f"{path}: the name says {parsed.tumour_class} but the file is in a folder named {part!r}")
        m = _MAG_FOLDER.match(part)
        if m and int(m.group(1)) != parsed.magnification:
            out.append(f"{path}: the name says {parsed.magnification}x but the file is in a folder named {part!r}")
    return out


def read_breakhis_folder(root: str | Path, magnification: int | None = None, labels: str = "binary") -> FilePatchSource:
    """Read every BreakHis image below ``root`` (recursively), checking each name.

    Files not ending in ``.png`` (checksums, notes) are ignored; every ``.png`` must follow the naming
    convention. Hidden files and folders (names starting with ``.``) are skipped.

    Args:
        root: Any folder tree holding BreakHis ``.png`` files.
        magnification: Keep only images at 40, 100, 200 or 400x (the usual per-magnification protocol);
            None keeps all.
        labels: ``"binary"``: 0 = benign, 1 = malignant; ``"subtype"``: the index in :data:`SUBTYPE_CLASS_NAMES`
            (0-3 the benign subtypes A, F, PT, TA; 4-7 the malignant DC, LC, MC, PC).

    Returns:
        A :class:`~breastdx.data.patches.FilePatchSource` named ``"breakhis"``: ids are paths relative to
        ``root``, labels as ``labels`` asks, groups the patient ids (``"22549"``: :attr:`BreakHisName.patient_id`),
        metadata ``"subtype"`` (code), ``"magnification"`` (int) and ``"number"`` (int). Images are returned at
        their stored size (700 x 460 in the release).

    Raises:
        ValueError: If ``magnification`` is not one of :data:`MAGNIFICATIONS`, or ``labels`` not one of :data:`LABELS`.
        DataError: Listing every problem: names off the convention, names that disagree with a
            ``benign``/``malignant`` or ``<mag>X`` folder, the same file name twice, or no image at all.
    """
    if magnification is not None and magnification not in MAGNIFICATIONS:
        raise ValueError(f"magnification must be one of {', '.join(map(str, MAGNIFICATIONS))} or None; "
                         f"got {magnification!r}.")
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}; got {labels!r}.")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected a folder of BreakHis images ({_CONVENTION}).")
    problems: list[str] = []
    records: list[tuple[Path, BreakHisName]] = []
    seen: dict[str, Path] = {}
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).parts
        derived = f.name.startswith("SOBderived_")
        if any(p.startswith(".") for p in rel) or not f.is_file() \
                or f.suffix.lower() not in (DERIVED_SUFFIXES if derived else IMAGE_SUFFIXES):
            continue
        try:
            parsed = parse_breakhis_derived_name(f) if derived else parse_breakhis_name(f)
        except BreakHisNameError as err:
            problems.append(str(err))
            continue
        folder_issues = _folder_problems(f, root, parsed)
        if folder_issues:
            problems.extend(folder_issues)
            continue
        if f.name in seen:
            problems.append(f"{f}: the same file name is also at {seen[f.name]}")
            continue
        seen[f.name] = f
        if magnification is None or parsed.magnification == magnification:
            records.append((f, parsed))
    if not records and not problems:
        problems.append(f"{root}: no BreakHis image"
                        + (f" at {magnification}x" if magnification is not None else "") + " below this folder")
    if problems:
        raise DataError(f"{root}: not a valid BreakHis folder.", problems)
    codes = list(SUBTYPES)
    subtype = labels == "subtype"
    return FilePatchSource(
        root, [f for f, _ in records], [codes.index(r.subtype) if subtype else r.label for _, r in records],
        name="breakhis", class_names=SUBTYPE_CLASS_NAMES if subtype else CLASS_NAMES,
        groups=[r.patient_id for _, r in records],
        metadata={"subtype": np.asarray([r.subtype for _, r in records], dtype=str),
                  "magnification": np.asarray([r.magnification for _, r in records], dtype=np.int64),
                  "number": np.asarray([r.number for _, r in records], dtype=np.int64)},
    )


@PATCH_DATASETS.register("breakhis")
def load_breakhis(data_root: str | Path, split: str | None = None,
                  magnification: int | None = None, labels: str = "binary") -> FilePatchSource:
    """Load BreakHis from the first of ``breakhis/``, ``BreaKHis_v1/``, ``breakhis_samples/`` below the data root.

    ``data_root`` may also be such a folder itself. Reading the 12-image fixture ``breakhis_samples/``
    logs a warning: it is for format tests only.

    Args:
        data_root: The data root.
        split: Must be None: BreakHis has no official split (use
            :func:`breastdx.data.patch_split.make_patch_split`, which groups by patient).
        magnification: See :func:`read_breakhis_folder`.
        labels: ``"binary"`` or ``"subtype"``; see :func:`read_breakhis_folder`.

    Raises:
        ValueError: If ``split`` is given, ``magnification`` is not a BreakHis magnification, or ``labels`` is
            unknown.
        DataError: If no BreakHis folder is found, or it is invalid.
    """
    if split is not None:
        raise ValueError(f"BreakHis has no official split; got split={split!r}. Split it by patient with "
                         f"breastdx.data.patch_split.make_patch_split.")
    root = Path(data_root)
    for name in BREAKHIS_FOLDERS:
        if (root / name).is_dir():
            if name == "breakhis_samples":
                logger.warning("%s: the 12-image BreakHis fixture (format tests only, not a training set)",
                               root / name)
            return read_breakhis_folder(root / name, magnification=magnification, labels=labels)
    if any(root.rglob("SOB_*.png")) or any(root.rglob("SOBderived_*")):
        return read_breakhis_folder(root, magnification=magnification, labels=labels)
    raise DataError(
        f"BreakHis not found below {root}: looked for {', '.join(BREAKHIS_FOLDERS)} and for SOB_*.png or "
        f"SOBderived_* files. "
        f"BreakHis is distributed by the P&D Lab (UFPR) for research use; unpack BreaKHis_v1 into "
        f"{root / 'breakhis'} or point the data root (--data-dir or BREASTDX_DATA) at its parent."
    )
