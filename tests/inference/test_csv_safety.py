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
