"""WDBC readers: the three sources agree, and every kind of bad input is named by line and column."""

from pathlib import Path

import numpy as np
import pytest

from breastdx.data.errors import DataError
from breastdx.data.wdbc import FEATURE_NAMES, load_wdbc, read_wdbc_file

KAGGLE = [f"{f}_{s}" for s in ("mean", "se", "worst") for f in
          ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave points",
           "symmetry", "fractal_dimension")]


@pytest.fixture(scope="module")
def sk():
    return load_wdbc()


def _write_uci(path: Path, table, ids=None, labels=None) -> Path:
    ids = ids if ids is not None else table.ids
    labels = labels if labels is not None else ["M" if v else "B" for v in table.y]
    lines = [",".join([ids[i], labels[i], *[repr(float(v)) for v in table.X[i]]]) for i in range(table.n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sklearn_copy_is_turned_round(sk):
    assert sk.X.shape == (569, 30) and sk.n == 569
    assert int(sk.y.sum()) == 212  # malignant is 1
    # First case of the UCI file: ID 842302, M, mean radius 17.99, worst fractal dimension 0.1189
    assert sk.y[0] == 1 and sk.X[0, 0] == pytest.approx(17.99) and sk.X[0, 29] == pytest.approx(0.1189)
    assert len(FEATURE_NAMES) == 30 and FEATURE_NAMES[7] == "mean concave points"


def test_uci_file_gives_same_table_and_checksum(sk, tmp_path):
    t = read_wdbc_file(_write_uci(tmp_path / "wdbc.data", sk))
    np.testing.assert_array_equal(t.X, sk.X)
    np.testing.assert_array_equal(t.y, sk.y)
    assert t.checksum == sk.checksum


@pytest.mark.parametrize("names", ["sklearn", "kaggle"])
def test_named_csv_any_column_order(sk, tmp_path, names):
    cols = list(FEATURE_NAMES) if names == "sklearn" else KAGGLE
    order = np.random.default_rng(0).permutation(30)
    header = ["id", "diagnosis", *[cols[j] for j in order]]
    rows = [",".join([sk.ids[i], "M" if sk.y[i] else "B", *[repr(float(sk.X[i, j])) for j in order]])
            for i in range(20)]
    path = tmp_path / "cases.csv"
    path.write_text(",".join(f'"{h}"' if " " in h else h for h in header) + "\n" + "\n".join(rows) + "\n")
    t = read_wdbc_file(path)
    np.testing.assert_array_equal(t.X, sk.X[:20])
    np.testing.assert_array_equal(t.y, sk.y[:20])


def test_scikit_learns_own_frame_keeps_its_labels(sk, tmp_path):
    """load_breast_cancer(as_frame=True).frame written to CSV: its 'target' is 0 = malignant. Read as 1 = malignant,
    every label was reversed (evaluate scored accuracy 0.017 without a word)."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(60, random_state=3)
    path = tmp_path / "sk.csv"
    frame.to_csv(path, index=False)
    t = read_wdbc_file(path)
    np.testing.assert_array_equal(t.y, 1 - frame["target"].to_numpy())
    assert int(t.y.sum()) == int((frame["target"] == 0).sum())  # malignant cases are 1 here
    frame.rename(columns={"target": "label"}).assign(label=1 - frame["target"]).to_csv(path, index=False)
    np.testing.assert_array_equal(read_wdbc_file(path).y, t.y)  # 'label' keeps 1 = malignant
    frame.assign(target="2").to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_wdbc_file(path)
    assert "expected M or B (or 0 = malignant, 1 = benign, scikit-learn's 'target'), got '2'" in str(info.value.problems)


def test_csv_without_diagnosis_reads_for_prediction(sk, tmp_path):
    path = tmp_path / "new.csv"
    path.write_text(",".join(f'"{n}"' for n in FEATURE_NAMES) + "\n"
                    + ",".join(str(v) for v in sk.X[3]) + "\n")
    t = read_wdbc_file(path)
    assert t.y is None and t.ids.tolist() == ["1"]
    with pytest.raises(DataError, match="no diagnosis column"):
        load_wdbc(path)


@pytest.mark.parametrize("sep, decimal", [(";", ","), (";", "."), ("\t", ","), ("\t", ".")])
def test_spreadsheet_exports_with_semicolons_or_tabs_and_decimal_commas(sk, tmp_path, sep, decimal):
    header = ["id", "diagnosis", *FEATURE_NAMES]
    rows = [sep.join([f"case {i},{i}", "M" if sk.y[i] else "B",
                      *[repr(float(v)).replace(".", decimal) for v in sk.X[i]]]) for i in range(20)]
    path = tmp_path / "export.csv"
    path.write_text(sep.join(header) + "\n" + "\n".join(rows) + "\n")
    t = read_wdbc_file(path)
    np.testing.assert_array_equal(t.X, sk.X[:20])
    np.testing.assert_array_equal(t.y, sk.y[:20])
    assert t.ids[3] == "case 3,3"  # only the feature values read the comma as a decimal mark
    uci = tmp_path / "wdbc.data"
    uci.write_text("\n".join(r.replace("case ", "") for r in rows[:2]) + "\n")
    np.testing.assert_array_equal(read_wdbc_file(uci).X, sk.X[:2])
    uci.write_text(sep.join(["842302", "M", "1", "2"]) + "\n")
    names = {";": "semicolons", "\t": "tabs"}[sep]
    with pytest.raises(DataError, match=f"line 1: expected 32 fields separated by {names}"):
        read_wdbc_file(uci)


def _header_csv(tmp_path, header, rows):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([",".join(header), *[",".join(r) for r in rows]]) + "\n")
    return path


def _good_row(sk, i, case_id=None):
    return [case_id or sk.ids[i], "M" if sk.y[i] else "B", *[str(v) for v in sk.X[i]]]


HEADER = ["id", "diagnosis", *KAGGLE]


@pytest.mark.parametrize("mutate, pattern", [
    (lambda r: r.__setitem__(5, "abc"), r"line 3, column 'mean area': expected a number, got 'abc'"),
    (lambda r: r.__setitem__(2, "nan"), r"line 3, column 'mean radius': expected a finite number"),
    (lambda r: r.__setitem__(2, "-1.5"), r"column 'mean radius': expected a value >= 0"),
    (lambda r: r.__setitem__(1, "X"), r"column 'diagnosis': expected M or B"),
    (lambda r: r.__setitem__(0, "842302"), r"line 3: duplicate ID \(the ID of line 2\)$"),
])
def test_bad_values_name_line_and_column(sk, tmp_path, mutate, pattern):
    bad = _good_row(sk, 1, "842517")
    mutate(bad)
    path = _header_csv(tmp_path, HEADER, [_good_row(sk, 0, "842302"), bad])
    with pytest.raises(DataError, match=pattern) as err:
        read_wdbc_file(path)
    assert str(path) in str(err.value)


def test_missing_and_extra_columns(sk, tmp_path):
    header = [h for h in HEADER if h != "area_worst"] + ["Unnamed: 32"]
    rows = [[c for h, c in zip(HEADER, _good_row(sk, 0)) if h != "area_worst"] + [""]]
    with pytest.raises(DataError) as err:
        read_wdbc_file(_header_csv(tmp_path, header, rows))
    text = str(err.value)
    assert "'Unnamed: 32': not a WDBC feature (extra column)" in text
    assert "missing column(s): 'worst area'" in text


def test_every_problem_listed_not_only_the_first(sk, tmp_path):
    rows = [_good_row(sk, i) for i in range(3)]
    rows[0][4] = "?"
    rows[2][10] = "-3"
    with pytest.raises(DataError) as err:
        read_wdbc_file(_header_csv(tmp_path, HEADER, rows))
    assert len(err.value.problems) == 2


def test_uci_file_wrong_field_count(tmp_path):
    path = tmp_path / "wdbc.data"
    path.write_text("842302,M,1,2,3\n")
    with pytest.raises(DataError, match="line 1: expected 32 fields separated by commas"):
        read_wdbc_file(path)


def test_empty_and_missing_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_wdbc_file(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_wdbc_file(tmp_path / "nope.csv")


def test_feature_bounds_are_100_times_the_wdbc_maxima(sk):
    from breastdx.data.wdbc import FEATURE_MAX, OBSERVED_MAX

    np.testing.assert_array_equal([OBSERVED_MAX[n] for n in FEATURE_NAMES], sk.X.max(axis=0))
    assert all(FEATURE_MAX[n] == 100 * OBSERVED_MAX[n] for n in FEATURE_NAMES)


@pytest.mark.parametrize("value, says", [
    ("1e308", r"column 'mean area': expected a value <= 250100 \(100 times the largest of the 569 WDBC cases"),
    ("9" * 400, r"column 'mean area': expected a finite number"),
    ("inf", r"column 'mean area': expected a finite number"),
])
def test_values_past_the_physical_range_are_refused(sk, tmp_path, value, says):
    bad = _good_row(sk, 1, "842517")
    bad[5] = value
    path = _header_csv(tmp_path, HEADER, [_good_row(sk, 0, "842302"), bad])
    with pytest.raises(DataError, match=r"line 3, " + says):
        read_wdbc_file(path)


def test_bad_rows_can_be_skipped_and_named(sk, tmp_path):
    rows = [_good_row(sk, i) for i in range(4)]
    rows[1][5] = "1e308"
    rows[2][2] = "x"
    rows[2][3] = "-1"
    path = _header_csv(tmp_path, HEADER, rows)
    t = read_wdbc_file(path, skip_bad_rows=True)
    assert t.ids.tolist() == [sk.ids[0], sk.ids[3]] and t.y.tolist() == [sk.y[0], sk.y[3]]
    np.testing.assert_array_equal(t.X, sk.X[[0, 3]])
    assert [where for where, _ in t.rejected] == [f"{path} line 3", f"{path} line 4"]
    assert "column 'mean area': expected a value <= 250100" in t.rejected[0][1]
    assert "column 'mean radius': expected a number, got 'x'; column 'mean texture': expected a value >= 0" \
        in t.rejected[1][1]


def test_example_case_is_the_first_wdbc_case(sk):
    from breastdx.data.wdbc import EXAMPLE_CASE

    assert list(EXAMPLE_CASE) == list(FEATURE_NAMES) and sk.ids[0] == "1" and sk.y[0] == 1
    np.testing.assert_array_equal(list(EXAMPLE_CASE.values()), sk.X[0])


def test_line_numbers_count_blank_lines_and_a_duplicate_id_hides_no_other_problem(sk, tmp_path):
    header = ",".join(["id", "diagnosis", *(f'"{n}"' for n in FEATURE_NAMES)])
    row = lambda case_id, first="17.99": ",".join([case_id, "M", first, *(repr(float(v)) for v in sk.X[0, 1:])])  # noqa: E731
    path = tmp_path / "cases.csv"
    path.write_text("\n".join([header, "", "", row("1000"), row("1001", "abc"), row("1002", "-1"),
                               row("1000")]) + "\n")
    with pytest.raises(DataError) as info:
        read_wdbc_file(path, skip_bad_rows=True)
    said = "\n".join(info.value.problems)
    assert "line 7: duplicate ID (the ID of line 4)" in said
    assert "line 5: column 'mean radius': expected a number, got 'abc'" in said
    assert "line 6: column 'mean radius': expected a value >= 0" in said
    assert "ID 10" not in said and "'10" not in said  # the IDs (1000-1002) may identify patients: lines do not


@pytest.mark.parametrize("head, kind", [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "a PNG image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
    (b"PK\x03\x04\x14\x00", r"a ZIP archive \(an .xlsx workbook is one: export it as CSV\)"),
    (bytes(128) + b"DICM" + b"\x02\x00", "a DICOM file"),
    (b"id,diagnosis\x00\x01\x02", "a binary file"),
])
def test_a_file_that_is_not_text_gets_one_error(tmp_path, head, kind):
    """An image given as WDBC cases: one error naming the file and what it is, not one per 'line' of its bytes."""
    path = tmp_path / "scan.png"
    path.write_bytes(head + b"\n,,\n" * 50)
    with pytest.raises(DataError, match=rf"scan.png: {kind}, not text") as err:
        read_wdbc_file(path)
    assert not err.value.problems


def test_utf16_spreadsheet_export_is_read(sk, tmp_path):
    """A spreadsheet's "Unicode text" export (UTF-16 with its byte-order mark, tab-separated) reads as the UTF-8 CSV."""
    rows = [_good_row(sk, 0, "842302"), _good_row(sk, 1, "842517")]
    utf8 = _header_csv(tmp_path, HEADER, rows)
    utf16 = tmp_path / "export.txt"
    utf16.write_text("\n".join("\t".join(r) for r in [HEADER, *rows]) + "\n", encoding="utf-16")
    a, b = read_wdbc_file(utf8), read_wdbc_file(utf16)
    assert list(b.ids) == list(a.ids) == ["842302", "842517"]
    np.testing.assert_array_equal(b.X, a.X)
    np.testing.assert_array_equal(b.y, a.y)


def test_kaggle_data_csv_with_its_trailing_comma_is_read(sk, tmp_path):
    """Kaggle's copy of WDBC (``data.csv``) ends every line, the header too, in a comma: an unnamed, empty 33rd
    column. It was refused as an extra column; it holds nothing, so the file reads as scikit-learn's copy. An
    unnamed column that holds a value is still an extra column."""
    path = tmp_path / "data.csv"
    lines = [",".join(f'"{c}"' for c in HEADER) + ",", *(",".join(_good_row(sk, i)) + "," for i in range(sk.n))]
    path.write_text("\n".join(lines) + "\n")
    t = read_wdbc_file(path)
    np.testing.assert_array_equal(t.X, sk.X)
    assert t.y.tolist() == sk.y.tolist() and t.checksum == sk.checksum and t.ids.tolist() == sk.ids.tolist()
    lines[2] = lines[2] + "7"  # a value under the unnamed column
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="columns do not match") as err:
        read_wdbc_file(path)
    assert err.value.problems == ["column 33 '': not a WDBC feature (extra column); expected the 30 features named "
                                  "as 'mean radius' or 'radius_mean', plus optional id and diagnosis"]


def test_bytes_that_are_not_utf8_are_refused_not_replaced(sk, tmp_path):
    """A spreadsheet's Windows (cp1252) export: 'Müller-1' was read as 'M\\ufffdller-1', altered in predictions.csv,
    and 'Möller-1' became its duplicate. The file is refused, naming the line and the bytes."""
    rows = [_good_row(sk, 0, "842302"), _good_row(sk, 1, "Müller-1"), _good_row(sk, 2, "Möller-1")]
    path = tmp_path / "export.csv"
    path.write_bytes(("\n".join(",".join(r) for r in [HEADER, *rows]) + "\n").encode("cp1252"))
    with pytest.raises(DataError, match=r"export.csv: line 3: the bytes b'\\xfc' are not UTF-8 text") as err:
        read_wdbc_file(path, skip_bad_rows=True)
    assert "save the file as UTF-8" in str(err.value)
    path.write_bytes(("\n".join(",".join(r) for r in [HEADER, *rows]) + "\n").encode("utf-8"))
    assert read_wdbc_file(path).ids.tolist() == ["842302", "Müller-1", "Möller-1"]
