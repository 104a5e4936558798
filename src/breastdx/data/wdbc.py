"""Wisconsin Diagnostic Breast Cancer (WDBC) data: 30 cell-nucleus features of fine-needle aspirates.

Three sources give the same table:

* the copy inside scikit-learn (``sklearn.datasets.load_breast_cancer``; its target is 0 = malignant,
  1 = benign, which :func:`load_wdbc` turns round so that 1 = malignant);
* the UCI file ``wdbc.data``: no header, 32 columns ``ID, diagnosis (M/B), 30 features``;
* a CSV with a header naming the 30 features, either scikit-learn's names (``mean radius``) or the
  UCI/Kaggle names (``radius_mean``), with optional ``id`` and ``diagnosis`` (M/B, or 1/0 with 1 =
  malignant) columns; a column with neither a name nor a value, as after the comma that ends every line of
  Kaggle's ``data.csv``, holds nothing and is left out.

Every reader validates the whole table and raises one :class:`~breastdx.data.errors.DataError` listing
every problem by file, line and column: missing or extra columns, non-numeric values, NaN, negative
values, duplicate IDs, unknown diagnoses. Nothing is silently dropped.

References:
    Street, W. N., Wolberg, W. H. & Mangasarian, O. L. (1993). Nuclear feature extraction for breast tumor
    diagnosis. Proc. SPIE 1905:861-870. doi:10.1117/12.148698
    Wolberg, W., Mangasarian, O., Street, N. & Street, W. (1993). Breast Cancer Wisconsin (Diagnostic).
    UCI Machine Learning Repository. doi:10.24432/C5DW2B
"""

from __future__ import annotations

import codecs
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastdx.data.checksum import sha256_arrays
from breastdx.data.errors import DataError

BASE_FEATURES = (
    "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave points",
    "symmetry", "fractal dimension",
)
STATISTICS = ("mean", "error", "worst")
UCI_STATISTICS = {"mean": "mean", "error": "se", "worst": "worst"}

FEATURE_NAMES: tuple[str, ...] = tuple(f"{s} {f}" for s in ("mean",) for f in BASE_FEATURES) + tuple(
    f"{f} error" for f in BASE_FEATURES) + tuple(f"worst {f}" for f in BASE_FEATURES)
"""The 30 feature names in scikit-learn's order (which is also the column order of ``wdbc.data``)."""

_BASE_UNITS = {
    "radius": "px", "perimeter": "px", "area": "px^2", "texture": "grey levels (std)",
}
FEATURE_UNITS: dict[str, str] = {
    name: next((u for b, u in _BASE_UNITS.items() if b in name), "dimensionless") for name in FEATURE_NAMES
}
"""Units of each feature: lengths in image pixels of the digitised aspirate (scale not published)."""

OBSERVED_MAX: dict[str, float] = dict(zip(FEATURE_NAMES, (
    28.11, 39.28, 188.5, 2501.0, 0.1634, 0.3454, 0.4268, 0.2012, 0.304, 0.09744,
    2.873, 4.885, 21.98, 542.2, 0.03113, 0.1354, 0.396, 0.05279, 0.07895, 0.02984,
    36.04, 49.54, 251.2, 4254.0, 0.2226, 1.058, 1.252, 0.291, 0.6638, 0.2075)))
"""Largest value of each feature in the 569 WDBC cases (scikit-learn's copy), in :data:`FEATURE_UNITS`."""

EXAMPLE_CASE: dict[str, float] = dict(zip(FEATURE_NAMES, (
    17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871,
    1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193,
    25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189)))
"""The first case of ``wdbc.data`` (ID 842302, malignant): an example of the 30 features, e.g. in the API's schema."""

FEATURE_BOUND_FACTOR = 100.0
"""How far past the largest WDBC value a feature may go: :data:`FEATURE_MAX` is this times :data:`OBSERVED_MAX`."""

FEATURE_MAX: dict[str, float] = {name: FEATURE_BOUND_FACTOR * v for name, v in OBSERVED_MAX.items()}
"""Largest accepted value of each feature: 100 times the largest of the WDBC cases. Every feature is a size or a
shape measure of nuclei, so 0 is the smallest; a value past this bound is a unit or typing error (or a probe,
such as ``1e308``, that would overflow the scaler), not a nucleus."""

CLASS_NAMES = ("benign", "malignant")
"""Class names in label order: 0 = benign, 1 = malignant (the positive class)."""


def check_feature_value(name: str, raw: object) -> tuple[float, str | None]:
    """Parse one feature value and check it against its physical range, ``0 <= value <= FEATURE_MAX[name]``.

    Args:
        name: A name of :data:`FEATURE_NAMES`.
        raw: A number or a numeric string (a JSON value or a CSV cell).

    Returns:
        ``(value, problem)``: the value as a float (NaN when it is not a number) and None, or a sentence
        saying what is wrong with it (not a number, too large for a float, not finite, negative, over the
        bound), to be prefixed with where the value came from.
    """
    shown = repr(raw.strip() if isinstance(raw, str) else raw)
    if len(shown) > 40:
        shown = f"{shown[:20]}...{shown[-8:]} ({len(shown) - 2} characters)"
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return math.nan, f"expected a number, got {shown}"
    if isinstance(raw, str) and "_" in raw:  # Python reads '1_7' as 17: a typo, not a number of a table
        return math.nan, f"expected a number, got {shown}"
    try:
        v = float(raw.strip() if isinstance(raw, str) else raw)
    except ValueError:
        return math.nan, f"expected a number, got {shown}"
    except OverflowError:  # an integer with hundreds of digits
        return math.inf, f"expected a number <= {FEATURE_MAX[name]:g}, got {shown}, too large for a float"
    if not math.isfinite(v):
        return v, f"expected a finite number, got {shown}"
    if v < 0:
        return v, f"expected a value >= 0 (sizes and shape measures cannot be negative), got {v}"
    if v > FEATURE_MAX[name]:
        return v, (f"expected a value <= {FEATURE_MAX[name]:g} ({FEATURE_BOUND_FACTOR:g} times the largest "
                   f"of the 569 WDBC cases, {OBSERVED_MAX[name]:g} {FEATURE_UNITS[name]}), got {v:g}")
    return v, None


def _aliases() -> dict[str, str]:
    out = {name: name for name in FEATURE_NAMES}
    for s in STATISTICS:
        for f in BASE_FEATURES:
            canonical = f"mean {f}" if s == "mean" else (f"{f} error" if s == "error" else f"worst {f}")
            out[f"{f}_{UCI_STATISTICS[s]}"] = canonical  # Kaggle/UCI: radius_mean, concave points_se
            out[f"{f.replace(' ', '_')}_{UCI_STATISTICS[s]}"] = canonical  # concave_points_worst
    return out


COLUMN_ALIASES = _aliases()
ID_COLUMNS = ("id", "ID", "case_id")
LABEL_COLUMNS = ("diagnosis", "label", "target")


@dataclass(frozen=True)
class WDBCTable:
    """A validated WDBC table.

    Attributes:
        X: Features, float64, shape ``(n, 30)``, columns in :data:`FEATURE_NAMES` order.
        y: Labels, int64 in {0, 1} (1 = malignant), shape ``(n,)``; None when the input has no diagnosis.
        ids: Case identifiers, str, shape ``(n,)`` (the row number when the input has none).
        source: Where the table came from (a path or ``"sklearn"``).
        checksum: SHA-256 of ``X`` and ``y``, independent of the source format.
        rejected: ``(where, reason)`` for every row left out by ``read_wdbc_file(..., skip_bad_rows=True)``;
            ``where`` names the file, the line and the ID.
    """

    X: np.ndarray
    y: np.ndarray | None
    ids: np.ndarray
    source: str
    checksum: str
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def load_wdbc(path: str | Path | None = None) -> WDBCTable:
    """Load labelled WDBC data from scikit-learn's copy (``path=None``), ``wdbc.data`` or a named CSV.

    Returns:
        A :class:`WDBCTable` with labels (1 = malignant).

    Raises:
        DataError: If the file is invalid or has no diagnosis column.
        FileNotFoundError: If ``path`` does not exist.
    """
    if path is None:
        from sklearn.datasets import load_breast_cancer

        ds = load_breast_cancer()
        if tuple(ds.feature_names) != FEATURE_NAMES:  # pragma: no cover - guards a scikit-learn change
            raise DataError("scikit-learn's breast-cancer copy has unexpected feature names.")
        X = np.asarray(ds.data, dtype=np.float64)
        y = (1 - np.asarray(ds.target)).astype(np.int64)  # scikit-learn: 0 = malignant
        ids = np.array([str(i + 1) for i in range(len(y))])
        return WDBCTable(X, y, ids, "sklearn", sha256_arrays(X, y))
    table = read_wdbc_file(path)
    if table.y is None:
        raise DataError(f"{path}: no diagnosis column; training and evaluation need labels "
                        f"(a column named one of {', '.join(LABEL_COLUMNS)}, M/B or 1/0 with 1 = malignant).")
    return table


def read_wdbc_file(path: str | Path, require_labels: bool = False, skip_bad_rows: bool = False) -> WDBCTable:
    """Read and validate ``wdbc.data`` (no header) or a CSV with named columns.

    Fields are separated by commas, or by semicolons or tabs (a spreadsheet's export, where a comma in a
    number is then its decimal mark: ``17,99`` reads as 17.99), as the first line shows.

    Every feature value must be a number in its physical range (:func:`check_feature_value`).

    Args:
        path: The file.
        require_labels: Raise when there is no diagnosis column.
        skip_bad_rows: Leave out the rows whose feature values are not valid (not numbers, negative, over
            :data:`FEATURE_MAX`) and list them in ``WDBCTable.rejected``, instead of raising (prediction goes
            on past them; training and evaluation must not).

    Returns:
        A :class:`WDBCTable`; ``y`` is None when the file has no diagnosis column.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataError: Listing every problem by line and column.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder; WDBC cases are read from CSV or wdbc.data files: name them (e.g. "
                        f"{path}/*.csv).")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = _text(path, path.read_bytes())
    delimiter = _delimiter(text)
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    numbered = [(reader.line_num, r) for r in reader]  # each row's line in the file, blank lines counted
    numbered = [(n, r) for n, r in numbered if any(c.strip() for c in r)]
    lines, rows = [n for n, _ in numbered], [r for _, r in numbered]
    if not rows:
        raise DataError(f"{path}: the file is empty; expected WDBC cases (30 features per row).")
    first = [c.strip() for c in rows[0]]
    has_header = any(c in COLUMN_ALIASES or c in ID_COLUMNS or c in LABEL_COLUMNS for c in first)
    if has_header:
        table = _from_named_rows(path, first, rows[1:], lines[1:], skip_bad_rows, delimiter)
    else:
        table = _from_uci_rows(path, rows, lines, skip_bad_rows, delimiter)
    if require_labels and table.y is None:
        raise DataError(f"{path}: no diagnosis column; expected one named {', '.join(LABEL_COLUMNS)}.")
    return table


_DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}

_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"II*\x00": "a TIFF image",
               b"MM\x00*": "a TIFF image", b"PK\x03\x04": "a ZIP archive "
               "(an .xlsx workbook is one: export it as CSV)", b"%PDF": "a PDF document"}


def _text(path: Path, raw: bytes) -> str:
    """The file's text: UTF-16 where it starts with a UTF-16 byte-order mark (a spreadsheet's "Unicode text"
    export), else UTF-8 (a byte-order mark dropped); one clear error for a file that is not text (an image, a
    workbook), instead of an error per 'line'.

    Bytes that are not text in that encoding are refused, not replaced: a spreadsheet's Windows export writes
    ``Müller-1`` as ``M\xfcller-1``, which replaced read ``M\ufffdller-1``, altering the case ID in
    ``predictions.csv`` (and making ``Möller-1`` its duplicate).

    Raises:
        DataError: If ``raw`` starts with a known binary signature, is a DICOM file, or holds NUL bytes in its
            first 8 KiB; or if it is not valid UTF-8 (UTF-16) text, naming the first line and bytes that are not.
    """
    kind = next((name for magic, name in _SIGNATURES.items() if raw.startswith(magic)), None)
    if kind is None and raw[128:132] == b"DICM":
        kind = "a DICOM file"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and kind is None:
        return _decode(path, raw, "utf-16")
    if kind is None and b"\x00" in raw[:8192]:
        kind = "a binary file"
    if kind is not None:
        raise DataError(f"{path}: {kind}, not text; WDBC cases are read from CSV or wdbc.data text files (30 "
                        f"features per row).")
    return _decode(path, raw, "utf-8-sig")


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    """``raw`` as text in ``encoding``, or a DataError naming the first line and bytes that are not."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[:e.start].decode(encoding, errors="replace").count("\n") + 1
        name = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise DataError(f"{path}: line {line}: the bytes {raw[e.start:e.end]!r} are not {name} text (a spreadsheet's "
                        f"export in a Windows encoding?); save the file as UTF-8 text (\"CSV UTF-8\") and try again. "
                        f"Nothing is guessed, so that a case ID such as 'Müller-1' is never altered.") from None


def _delimiter(text: str) -> str:
    """The field separator of the first non-empty line: ``,``, ``;`` or tab.

    ``;`` or tab where either splits it into 30 fields or more (spreadsheets in locales that write the decimal
    mark as a comma export CSV separated by semicolons, so such a line may hold more commas than semicolons);
    else the one that splits it into the most fields, ``,`` on a tie.
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    fields = {d: len(next(csv.reader([first], delimiter=d), [])) for d in (",", ";", "\t")}
    for d in (";", "\t"):
        if fields[d] >= len(FEATURE_NAMES):
            return d
    return max(fields, key=lambda d: fields[d])  # the first of equals: ","


def _from_uci_rows(path: Path, rows: list[list[str]], lines: list[int], skip_bad_rows: bool,
                   delimiter: str) -> WDBCTable:
    problems = []
    for i, r in enumerate(rows):
        if len(r) != 32:
            problems.append(f"line {lines[i]}: expected 32 fields separated by {_DELIMITER_NAMES[delimiter]} (ID, "
                            f"diagnosis, 30 features), found {len(r)}")
    if problems:
        raise DataError(f"{path}: not a valid wdbc.data file (and it has no header naming columns).", problems)
    ids = [r[0].strip() for r in rows]
    labels = [r[1].strip() for r in rows]
    values = [r[2:] for r in rows]
    return _build(path, ids, labels, values, lines, skip_bad_rows=skip_bad_rows, delimiter=delimiter)


def _from_named_rows(path: Path, header: list[str], rows: list[list[str]], lines: list[int], skip_bad_rows: bool,
                     delimiter: str) -> WDBCTable:
    problems = []
    id_col = next((i for i, c in enumerate(header) if c in ID_COLUMNS), None)
    label_col = next((i for i, c in enumerate(header) if c in LABEL_COLUMNS), None)
    feature_cols: dict[str, int] = {}
    for i, c in enumerate(header):
        if i in (id_col, label_col) or _empty_column(header, rows, i):
            continue
        canonical = COLUMN_ALIASES.get(c)
        if canonical is None:
            problems.append(f"column {i + 1} {c!r}: not a WDBC feature (extra column); expected the 30 features "
                            f"named as {FEATURE_NAMES[0]!r} or 'radius_mean', plus optional id and diagnosis")
        elif canonical in feature_cols:
            problems.append(f"column {i + 1} {c!r}: feature {canonical!r} appears twice")
        else:
            feature_cols[canonical] = i
    missing = [f for f in FEATURE_NAMES if f not in feature_cols]
    if missing:
        problems.append(f"missing column(s): {', '.join(repr(m) for m in missing)}")
    if problems:
        raise DataError(f"{path}: the columns do not match the 30 WDBC features.", problems)
    for i, r in enumerate(rows):
        if len(r) != len(header):
            problems.append(f"line {lines[i]}: {len(r)} fields, but the header has {len(header)}")
    if problems:
        raise DataError(f"{path}: rows do not match the header.", problems)
    ids = [r[id_col].strip() for r in rows] if id_col is not None else [str(i + 1) for i in range(len(rows))]
    labels = [r[label_col].strip() for r in rows] if label_col is not None else None
    values = [[r[feature_cols[f]] for f in FEATURE_NAMES] for r in rows]
    coding = SKLEARN_TARGET if label_col is not None and header[label_col] == "target" else _LABELS
    return _build(path, ids, labels, values, lines, skip_bad_rows=skip_bad_rows, delimiter=delimiter,
                  label_coding=coding)


def _empty_column(header: list[str], rows: list[list[str]], i: int) -> bool:
    """Whether column ``i`` has no name and no value in any row: the column after a trailing separator, as in
    Kaggle's copy of WDBC (``data.csv``, whose lines end in a comma). It holds nothing, so leaving it out drops
    nothing; an unnamed column holding a value is an extra column."""
    return not header[i] and all(i >= len(r) or not r[i].strip() for r in rows)


_LABELS = {"M": 1, "B": 0, "1": 1, "0": 0, "malignant": 1, "benign": 0}
SKLEARN_TARGET = {"M": 1, "B": 0, "0": 1, "1": 0, "malignant": 1, "benign": 0}
"""A column named ``target`` is scikit-learn's (``load_breast_cancer(as_frame=True).frame``): 0 = malignant,
1 = benign, the reverse of ``diagnosis``/``label`` (1 = malignant). Read the other way, every label of a table
exported from scikit-learn was reversed."""


def _build(path: Path, ids: list[str], labels: list[str] | None, values: list[list[str]],
           lines: list[int], skip_bad_rows: bool, delimiter: str = ",",
           label_coding: dict[str, int] = _LABELS) -> WDBCTable:
    problems: list[str] = []
    rejected: list[tuple[str, str]] = []
    n = len(values)
    X = np.full((n, len(FEATURE_NAMES)), np.nan)
    keep = np.ones(n, dtype=bool)
    for i, row in enumerate(values):
        where = f"line {lines[i]}"  # not its ID, which may identify a patient: the line finds the row
        row_problems = []
        for j, (name, cell) in enumerate(zip(FEATURE_NAMES, row)):
            # Where ; or tab separates the fields, a comma is the decimal mark (17,99 for 17.99).
            X[i, j], problem = check_feature_value(name, cell if delimiter == "," else cell.replace(",", "."))
            if problem is not None:
                row_problems.append(f"column {name!r}: {problem}")
        if row_problems and skip_bad_rows:
            keep[i] = False
            rejected.append((f"{path} {where}", "; ".join(row_problems)))
        elif row_problems:
            problems.extend(f"{where}, {p}" for p in row_problems)
    y = None
    if labels is not None:
        y = np.zeros(n, dtype=np.int64)
        for i, lab in enumerate(labels):
            if lab not in label_coding:
                numbers = ("0 = malignant, 1 = benign, scikit-learn's 'target'" if label_coding is SKLEARN_TARGET
                           else "1 = malignant, 0 = benign")
                problems.append(f"line {lines[i]}, column 'diagnosis': expected M or B "
                                f"(or {numbers}), got {lab!r}")
            else:
                y[i] = label_coding[lab]
    seen: dict[str, int] = {}
    for i, case_id in enumerate(ids):
        if case_id == "":
            problems.append(f"line {lines[i]}: empty ID")
        elif case_id in seen:
            problems.append(f"line {lines[i]}: duplicate ID (the ID of line {lines[seen[case_id]]})")
        else:
            seen[case_id] = i
    if n == 0:
        problems.append("no data rows")
    if problems:  # with the rows that would have been skipped: every problem of the file at once
        raise DataError(f"{path}: invalid WDBC data.", problems + [f"{where}: {why}" for where, why in rejected])
    X, kept_ids = X[keep], np.array(ids)[keep]
    y = None if y is None else y[keep]
    checksum = sha256_arrays(X, y) if y is not None else sha256_arrays(X)
    return WDBCTable(X, y, kept_ids, str(path), checksum, tuple(rejected))
