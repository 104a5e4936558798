"""A self-contained HTML report: headings, paragraphs, metric tables and PNG figures stored beside it."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from breastdx import RESEARCH_USE_ONLY

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.notice{background:#fff4e5;border:1px solid #f0b429;
padding:.6em 1em;border-radius:4px}figure{display:inline-block;margin:.5em}img{max-width:480px}figcaption{font-size:.85em;color:#555}
.best{font-weight:bold}
"""


def fmt(value: Any, digits: int = 3) -> str:
    """A number for display; NaN and None as ``n/a``."""
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    return "n/a" if v != v else f"{v:.{digits}f}"


class Markup(str):
    """Text that is already HTML (a link, say): :meth:`HtmlReport.table` inserts it as it is, and escapes every
    other string."""


class HtmlReport:
    """Build a report section by section, then :meth:`write` it.

    Args:
        title: Page title.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = [f'<p class="notice"><b>{html.escape(RESEARCH_USE_ONLY)}</b></p>']

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], highlight_row: int | None = None) -> None:
        """A table; cells that are numbers are formatted with 3 decimals, strings are escaped (a file name from the
        data cannot inject markup) unless they are :class:`Markup`."""
        out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
        for i, row in enumerate(rows):
            cls = ' class="best"' if i == highlight_row else ""
            cells = "".join(f"<td>{_cell(c)}</td>" for c in row)
            out.append(f"<tr{cls}>{cells}</tr>")
        out.append("</table>")
        self.parts.append("".join(out))

    def metrics_table(self, metrics: dict[str, dict[str, Any]], label: Any = None) -> None:
        """A table of ``{name: {"value", "ci95"}}``; ``label(name)`` names a row (e.g. with its operating point,
        :func:`breastdx.evaluation.tables.metric_label`), else the name is shown as it is."""
        rows = [[label(k) if label else k, fmt(m["value"]), f"{fmt(m['ci95'][0])} – {fmt(m['ci95'][1])}"]
                for k, m in metrics.items()]
        self.table(["metric", "value", "95% CI"], rows)

    def figure(self, png: Path, caption: str) -> None:
        """A PNG figure, referenced by its file name (it must sit beside the report), URL-quoted: a '#', '?' or '%'
        in the name is part of the name, not a fragment, query or escape."""
        from urllib.parse import quote

        self.parts.append(f'<figure><img src="{html.escape(quote(png.name))}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def raw(self, markup: str) -> None:
        """Trusted markup built by breastdx itself."""
        self.parts.append(markup)

    def write(self, path: Path) -> Path:
        """Write the page to ``path``."""
        body = "\n".join(self.parts)
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                        f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n",
                        encoding="utf-8")
        return path


def _cell(value: Any) -> str:
    """A table cell's HTML: :class:`Markup` as it is, other strings escaped, numbers with 3 decimals."""
    if isinstance(value, Markup):
        return str(value)
    return html.escape(value) if isinstance(value, str) else fmt(value)
