"""CSV cells that a spreadsheet would run as formulas, neutralised (CSV injection).

A case id or file name such as ``=HYPERLINK("http://...")`` goes from the user's input into ``predictions.csv``;
a spreadsheet that opens the file would run it. As OWASP advises, a text cell that begins with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return is written with a leading apostrophe, which spreadsheets show as text
and do not display. Numbers are left alone (a negative SHAP value stays a number).

Spreadsheets in locales whose list separator is ``;`` split a CSV line at every ``;`` (quotes open a cell only at
its start), so a file name ``x;=1+2.png`` gives the cell ``=1+2.png,...``: a formula, however the first character
of the whole name is checked (OWASP: "take care of the field separator"). An apostrophe is written after such a
``;`` too (``x;'=1+2.png``).

A file name that is not valid UTF-8 (Latin-1 bytes from an old archive or disc) reaches Python with its bad bytes
as lone surrogates, which no UTF-8 file can hold; such a cell is written with those bytes as ``\\xe9`` escapes
(as ``ls -b`` shows the name), so that one odd name does not stop the whole CSV from being written.

References:
    OWASP, CSV Injection. https://owasp.org/www-community/attacks/CSV_Injection
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""

_SEPARATED_FORMULA = re.compile(r";(?=[ ]*[=+\-@\t\r])")
"""A ``;`` (a spreadsheet's list separator in many locales) before a formula's first character."""


def safe_cell(value: Any) -> Any:
    """``value`` with ``'`` before it when it is text that begins with one of :data:`FORMULA_PREFIXES` (and after
    any ``;`` followed by one), and with undecodable bytes of a file name (lone surrogates) written as ``\\x..``
    escapes."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate no file name holds
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    value = _SEPARATED_FORMULA.sub(";'", value)  # a ';' starts a cell in a ';'-separated spreadsheet
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row (``{column: value}``) with every cell passed through :func:`safe_cell`."""
    return {key: safe_cell(value) for key, value in row.items()}


def safe_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every row through :func:`safe_row`."""
    return [safe_row(row) for row in rows]
