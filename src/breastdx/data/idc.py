"""IDC: 50 x 50 RGB patches of breast-cancer whole-mount slides, label 1 = invasive ductal carcinoma.

Janowczyk & Madabhushi (2016) cut 277,524 patches of 50 x 50 pixels from 162 whole-mount slides scanned
at 40x and downsampled 16:1 (an apparent 2.5x). Two public formats are read:

* **``IDC_regular``** (Kaggle "Breast Histopathology Images", also ``IDC_regular_ps50_idx5``): one folder
  per patient, ``<patient_id>/{0,1}/<patient_id>_idx5_x<X>_y<Y>_class<0|1>.png``, where ``X, Y`` are the
  patch's top-left corner in the slide (:func:`read_idc_folders`). The patient id and class are read from
  both the folder names and the file name, and any disagreement is an error naming the file. Patches at
  the right or bottom edge of a slide can be smaller than 50 x 50; they are padded with white (255) on
  the bottom and right, the sides where the slide ended (``pad=True``), or returned as stored.
* **The Kaggle ``X.npy`` / ``Y.npy`` subset**: 5,547 patches, ``X`` ``uint8`` of shape
  ``(5547, 50, 50, 3)`` and ``Y`` 0/1 labels (:func:`read_idc_npy`). It carries **no patient id**, so it
  can only be split stratified by class, and patches of one patient then land on both sides of a split:
  figures measured on such a split are optimistic (patient leakage). Its channel order was not
  documented by its author; the reader returns the arrays as stored and logs a warning when the mean
  blue channel exceeds the mean red one (H&E is red-dominant; BGR data look blue).

:func:`patient_split` splits IDC by patient (grouped and stratified, seeded), never putting one
patient in two splits.

The project's data root holds a real, partial copy in the ``IDC_regular`` layout (``idc/``: 5,537 patches of all
279 patients, see its PROVENANCE.md); the tests read slices of it, and test the ``X.npy`` reader on small files
written in that format.

References:
    Janowczyk, A. & Madabhushi, A. (2016). Deep learning for digital pathology image analysis: a
    comprehensive tutorial with selected use cases. J Pathol Inform 7:29. doi:10.4103/2153-3539.186902
    Cruz-Roa, A. et al. (2014). Automatic detection of invasive ductal carcinoma in whole slide images
    with convolutional neural networks. Proc. SPIE 9041:904103. doi:10.1117/12.2043872
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from breastdx.data.checksum import sha256_file, sha256_listing
from breastdx.data.errors import DataError
from breastdx.data.image_files import visible_entries
from breastdx.data.patches import CLASS_NAMES, PATCH_DATASETS, ArrayPatchSource, FilePatchSource, PatchSource
from breastdx.data.splits import DEFAULT_SPLIT_METHOD

logger = logging.getLogger(__name__)

PATCH_SHAPE: tuple[int, int, int] = (50, 50, 3)
"""``(H, W, C)`` of an IDC patch."""

IDC_FOLDER = "idc"
"""Folder below the data root that holds IDC (either format)."""

REGULAR_FOLDERS = ("IDC_regular_ps50_idx5", "IDC_regular")
"""Names under which the patient folders are published; looked for inside :data:`IDC_FOLDER` first."""

NPY_FILES = ("X.npy", "Y.npy")
"""File names of the Kaggle subset."""

_NAME = re.compile(r"^(?P<patient>\d+)_idx5_x(?P<x>\d+)_y(?P<y>\d+)_class(?P<label>[01])\.png$")


# ----------------------------------------------------------------------------------------------------
# Kaggle X.npy / Y.npy


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected the Kaggle IDC subset (X.npy and Y.npy).")
    with open(path, "rb") as f:
        head = f.read(6)
    if head != b"\x93NUMPY":
        raise DataError(f"{path}: not a valid .npy file (its first bytes {head!r} are not the .npy magic "
                        f"b'\\x93NUMPY').")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower() or "python objects" in str(err).lower():
            raise DataError(f"{path}: stores Python objects (pickled); refusing to load it. Expected a plain "
                            f"numeric .npy array.") from None
        raise DataError(f"{path}: not a valid .npy file ({err}).") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read as .npy ({err}).") from None


def read_idc_npy(x_path: str | Path, y_path: str | Path) -> ArrayPatchSource:
    """Read the Kaggle IDC subset ``X.npy`` (patches) and ``Y.npy`` (labels), memory-mapped.

    Both files are opened with ``np.load(mmap_mode="r", allow_pickle=False)``: patches are read from disk
    one at a time and no pickled object is ever loaded.

    Args:
        x_path: ``X.npy``: ``uint8``, shape ``(N, 50, 50, 3)``.
        y_path: ``Y.npy``: integer (or bool) labels in {0, 1}, shape ``(N,)`` or ``(N, 1)``.

    Returns:
        An :class:`~breastdx.data.patches.ArrayPatchSource` named ``"idc"`` with ids ``"X.npy#<row>"``,
        **no groups** (the subset has no patient id: see the module docstring about leakage) and the
        checksum of both files.

    Raises:
        DataError: If a file is missing, pickled or not ``.npy``, if ``X`` is not ``uint8``
            ``(N, 50, 50, 3)``, if ``Y`` is not one integer per patch, or a label is not 0 or 1. The message
            names the file.
    """
    x_path, y_path = Path(x_path), Path(y_path)
    X = _load_npy(x_path)
    Y = _load_npy(y_path)
    if X.dtype != np.uint8 or X.ndim != 4 or tuple(X.shape[1:]) != PATCH_SHAPE:
        raise DataError(f"{x_path}: array is {X.dtype} of shape {X.shape}; expected uint8 of shape (N, 50, 50, 3).")
    n = int(X.shape[0])
    if not (Y.ndim == 1 or (Y.ndim == 2 and Y.shape[1] == 1)) or Y.shape[0] != n:
        raise DataError(f"{y_path}: array has shape {Y.shape}; expected ({n},): one label per patch of "
                        f"{x_path.name} ({n} patches).")
    if not (np.issubdtype(Y.dtype, np.integer) or Y.dtype == bool):
        raise DataError(f"{y_path}: array is {Y.dtype}; expected integer labels 0 or 1.")
    labels = np.asarray(Y).reshape(n).astype(np.int64)
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        raise DataError(f"{y_path}: {bad.size} labels are not 0 or 1 (first at row {int(bad[0])}: "
                        f"{int(labels[bad[0]])}).")
    if n:
        head = np.asarray(X[:min(n, 256)], dtype=np.float64)
        red, blue = head[..., 0].mean(), head[..., 2].mean()
        if blue > red:
            logger.warning("%s: mean blue %.1f exceeds mean red %.1f; H&E patches are red-dominant, so the array "
                           "may be stored BGR (check a few patches by eye).", x_path, blue, red)
    checksum = sha256_listing([(x_path.name, sha256_file(x_path)), (y_path.name, sha256_file(y_path))])
    return ArrayPatchSource(X, labels, name="idc", class_names=CLASS_NAMES,
                            ids=[f"{x_path.name}#{i}" for i in range(n)], checksum=checksum)


# ----------------------------------------------------------------------------------------------------
# IDC_regular patient folders


def _is_patient_folder(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "0").is_dir() or (folder / "1").is_dir())


def _has_patients(folder: Path) -> bool:
    return folder.is_dir() and any(_is_patient_folder(p) for p in visible_entries(folder))


def parse_idc_name(path: str | Path) -> tuple[str, int, int, int]:
    """Parse ``<patient>_idx5_x<X>_y<Y>_class<C>.png``.

    Returns:
        ``(patient id, X, Y, class)``.

    Raises:
        DataError: If the name does not follow the convention (the message names the file).
    """
    m = _NAME.match(Path(path).name)
    if m is None:
        raise DataError(f"{path}: file name does not follow the IDC convention "
                        f"'<patient>_idx5_x<X>_y<Y>_class<0|1>.png' (e.g. 10253_idx5_x1351_y1101_class0.png).")
    return m["patient"], int(m["x"]), int(m["y"]), int(m["label"])


def read_idc_folders(root: str | Path, pad: bool = True) -> FilePatchSource:
    """Read the ``IDC_regular`` layout ``<root>/<patient_id>/{0,1}/<patient_id>_idx5_x<X>_y<Y>_class<C>.png``.

    Every file name is parsed and checked against its folders before anything is returned. Folders of
    ``root`` that hold neither ``0/`` nor ``1/`` are logged and skipped (the Kaggle archive also holds a
    copy of all patients inside ``IDC_regular_ps50_idx5/``: point ``root`` at one of the two copies).

    Args:
        root: The folder holding one folder per patient.
        pad: Pad edge patches smaller than 50 x 50 with white on the bottom and right; if False they
            are returned as stored.

    Returns:
        A :class:`~breastdx.data.patches.FilePatchSource` named ``"idc"``: ids
        ``"<patient>/<class>/<file>"``, groups = patient ids, metadata ``"x"`` and ``"y"`` (the patch's
        corner in the slide).

    Raises:
        DataError: Listing every problem: a file name off the convention, a patient id in the name that
            differs from its folder's, a class in the name that differs from its folder's, a folder other
            than ``0``/``1`` in a patient folder, an empty file, or no patch at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected the IDC_regular layout <patient_id>/{{0,1}}/*.png.")
    problems: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    groups: list[str] = []
    xs: list[int] = []
    ys: list[int] = []
    skipped = []
    for patient_dir in visible_entries(root):
        if not _is_patient_folder(patient_dir):
            skipped.append(patient_dir.name)
            continue
        for class_dir in visible_entries(patient_dir):
            if not class_dir.is_dir() or class_dir.name not in ("0", "1"):
                problems.append(f"{class_dir}: unexpected {'folder' if class_dir.is_dir() else 'file'} in a patient "
                                f"folder; expected class folders 0 (no IDC) and 1 (IDC)")
                continue
            for f in visible_entries(class_dir):
                m = _NAME.match(f.name)
                if m is None or not f.is_file():
                    problems.append(f"{f}: file name does not follow '<patient>_idx5_x<X>_y<Y>_class<0|1>.png'")
                    continue
                if m["patient"] != patient_dir.name:
                    problems.append(f"{f}: the name gives patient {m['patient']} but the file is in patient folder "
                                    f"{patient_dir.name}")
                    continue
                if m["label"] != class_dir.name:
                    problems.append(f"{f}: the name gives class {m['label']} but the file is in class folder "
                                    f"{class_dir.name}")
                    continue
                if f.stat().st_size == 0:
                    problems.append(f"{f}: empty file (0 bytes)")
                    continue
                paths.append(f)
                labels.append(int(m["label"]))
                groups.append(m["patient"])
                xs.append(int(m["x"]))
                ys.append(int(m["y"]))
    if skipped:
        logger.info("%s: %d folder(s) without class folders 0/ or 1/ skipped: %s", root, len(skipped),
                    ", ".join(skipped[:10]))
    if not paths and not problems:
        problems.append(f"{root}: no patient folder with IDC patches (<patient_id>/{{0,1}}/*.png)")
    if problems:
        raise DataError(f"{root}: not a valid IDC_regular folder.", problems)
    return FilePatchSource(root, paths, labels, name="idc", class_names=CLASS_NAMES, groups=groups,
                           metadata={"x": np.asarray(xs, np.int64), "y": np.asarray(ys, np.int64)},
                           pad_to=PATCH_SHAPE[:2] if pad else None)


def find_idc(data_root: str | Path) -> tuple[str, Path]:
    """Where IDC lies below ``data_root``, and in which format.

    Looks in ``<data_root>/idc`` (and ``data_root`` itself) for, in this order, patient folders inside
    ``IDC_regular_ps50_idx5/`` or ``IDC_regular/``, patient folders directly, then ``X.npy`` + ``Y.npy``.
    Patient folders win over the ``.npy`` subset because they carry patient ids.

    Returns:
        ``("folders", root)`` or ``("npy", folder)``.

    Raises:
        DataError: If neither format is found (the message says where it looked).
    """
    data_root = Path(data_root)
    bases = [data_root / IDC_FOLDER, data_root]
    for base in bases:
        for candidate in [base / name for name in REGULAR_FOLDERS] + [base]:
            if _has_patients(candidate):
                return "folders", candidate
    for base in bases:
        if all((base / f).is_file() for f in NPY_FILES):
            return "npy", base
    raise DataError(
        f"IDC not found below {data_root}: expected {data_root / IDC_FOLDER}/IDC_regular_ps50_idx5/<patient_id>/"
        f"{{0,1}}/*.png (or patient folders directly in {data_root / IDC_FOLDER}), or the Kaggle subset "
        f"{data_root / IDC_FOLDER}/X.npy with Y.npy. IDC is distributed by Kaggle (an account is needed); "
        f"place it there or point the data root (--data-dir or BREASTDX_DATA) at the folder that holds idc/."
    )


@PATCH_DATASETS.register("idc")
def load_idc(data_root: str | Path, split: str | None = None, pad: bool = True) -> PatchSource:
    """Load IDC from below the data root (see :func:`find_idc` for where and which format).

    Args:
        data_root: The data root.
        split: Must be None: IDC has no official split (use :func:`patient_split`).
        pad: See :func:`read_idc_folders`.

    Returns:
        The source from :func:`read_idc_folders` or :func:`read_idc_npy`.

    Raises:
        ValueError: If ``split`` is given.
        DataError: If IDC is not found or is invalid.
    """
    if split is not None:
        raise ValueError(f"IDC has no official split; got split={split!r}. Load all patches and split them "
                         f"by patient with breastdx.data.idc.patient_split.")
    kind, where = find_idc(data_root)
    if kind == "folders":
        return read_idc_folders(where, pad=pad)
    return read_idc_npy(where / NPY_FILES[0], where / NPY_FILES[1])


def patient_split(source: PatchSource, ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                  method: str = DEFAULT_SPLIT_METHOD):
    """Split IDC patches by patient: grouped, stratified by class, seeded (see
    :func:`breastdx.data.patch_split.make_patch_split`).

    A source without patient ids (the Kaggle ``X.npy``) is split stratified only; a warning is logged
    and written into the split, since patches of one patient then fall on both sides.

    Args:
        source: The IDC patches (:func:`load_idc`).
        ratios: Fractions of train, val and test, >= 0, summing to 1.
        seed: Random seed; the same data and seed give the same split.
        method: How the patients are placed (:data:`breastdx.data.splits.SPLIT_METHODS`; ``absolute`` remakes the
            splits made before 2026-12-06).

    Returns:
        A :class:`breastdx.data.splits.SplitFile` (unsaved).

    Raises:
        ValueError: If the ratios are not three fractions summing to 1, or the method is unknown.
    """
    from breastdx.data.patch_split import make_patch_split

    return make_patch_split(source, ratios=ratios, seed=seed, method=method)
