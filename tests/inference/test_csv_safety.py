"""CSV injection: text that a spreadsheet would run as a formula gets a leading apostrophe; numbers do not."""

import pytest

from breastdx.inference.csv_safety import safe_cell, safe_row, safe_rows


@pytest.mark.parametrize("value, written", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"), ("+1", "'+1"), ("-1", "'-1"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("case=1", "case=1"), ("", ""),
    (-0.5, -0.5), (3, 3), (None, None), (True, True),
])
def test_safe_cell(value, written):
    assert safe_cell(value) == written


def test_rows_keep_their_columns():
    assert safe_row({"id": "=1", "p": -0.25}) == {"id": "'=1", "p": -0.25}
    assert safe_rows([{"a": "-x"}, {"a": "x"}]) == [{"a": "'-x"}, {"a": "x"}]


def test_a_file_name_that_is_not_utf8_is_written_with_its_bytes_escaped():
    """Latin-1 bytes in a file name reach Python as lone surrogates, which a UTF-8 file cannot hold: the whole CSV
    failed to be written after the batch had run."""
    name = b"scan_\xe9\xff.dcm".decode("utf-8", "surrogateescape")
    assert safe_cell(name) == "scan_\\xe9\\xff.dcm"
    assert safe_cell("=" + name) == "'=scan_\\xe9\\xff.dcm"
    assert safe_cell("\ud800x") == "\\ud800x"  # a surrogate no file name holds: escaped all the same
    assert safe_cell("échographie 超声.png") == "échographie 超声.png"  # valid UTF-8 is left alone
