"""Review 31b: report figures and pages on edge cases (a test set of one class, file names in a page)."""

import warnings

import matplotlib.pyplot as plt
import numpy as np


def test_a_roc_of_a_single_class_set_is_not_drawn_and_warns_nothing(tmp_path):
    """roc_curve of labels of one class has no false- (or true-) positive rate: sklearn warned and the plot drew
    NaN; the curve is now named as missing in the legend, the others are drawn, the figure is closed."""
    from breastdx.evaluation.plots import plot_roc_curves

    before = plt.get_fignums()
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_roc_curves({"all malignant": (np.ones(6, int), rng.random(6)),
                         "both": (np.array([0, 1, 0, 1, 1, 0]), rng.random(6))}, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 0
    assert plt.get_fignums() == before


def test_a_figure_s_file_name_is_a_url_that_points_at_that_file(tmp_path):
    """The name went into ``src`` HTML-escaped only: '#' started a fragment, '?' a query and '%' an escape, so
    ``case #3.png`` pointed at ``case `` (no image); ``"`` or ``<`` must not end the attribute either."""
    from pathlib import Path
    from urllib.parse import unquote

    from breastdx.evaluation.report import HtmlReport

    rep = HtmlReport("t")
    name = 'case #3 ?a=1 50%"<b>.png'
    rep.figure(Path(name), "caption <i>")
    page = rep.write(tmp_path / "r.html").read_text(encoding="utf-8")
    src = page.split('<img src="', 1)[1].split('"', 1)[0]
    assert unquote(src) == name and not any(c in src for c in '#?"<> ')
    figure = page[page.index("<figure>"):]
    assert "caption &lt;i&gt;" in figure and "<b>" not in figure and "<i>" not in figure


def test_table_cells_are_escaped_unless_marked_as_markup(tmp_path):
    """Table cells were inserted as markup, so each caller had to escape data text itself: a tile or file name
    from the data put into a table unescaped (the nuclei report's tile names) could inject markup."""
    from breastdx.evaluation.report import HtmlReport, Markup

    rep = HtmlReport("t")
    rep.table(["name <h>", "value"], [['tile<script>alert(1)</script> & "x"', 0.12345],
                                      [Markup('<a href="f.html">f</a>'), "Youden's J"]])
    page = rep.write(tmp_path / "r.html").read_text(encoding="utf-8")
    table = page[page.index("<table>"):page.index("</table>")]
    assert "<script>" not in table and "tile&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;" in table
    assert '<a href="f.html">f</a>' in table and "Youden&#x27;s J" in table and "0.123" in table
    assert "<th>name &lt;h&gt;</th>" in table


def test_names_with_dollar_signs_are_drawn_as_written(tmp_path):
    """Class, group and model names come from the data (a labels.csv, folder names): a pair of '$' made Matplotlib
    read the text between as mathtext, so 'cost $5 to $6' was drawn in italics without its dollars and '$$' or
    '$\\frac{$' stopped the figure with a ValueError. Every text of a report figure is now drawn literally."""
    from breastdx.evaluation.plots import plot_confusion, plot_reliability, plot_roc_curves
    from breastdx.evaluation.segmentation_plots import plot_score_distribution

    y, p = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.3])
    for i, name in enumerate(["$$", "$\\frac{$", "cost $5 to $6"]):
        plot_confusion(np.eye(2), [name, "b"], tmp_path / f"c{i}.png", title=name)
        plot_roc_curves({name: (y, p)}, tmp_path / f"r{i}.png", title=name)
        plot_reliability({name: (y, p)}, tmp_path / f"l{i}.png", title=name)
        plot_score_distribution({name: [0.1, 0.5]}, tmp_path / f"d{i}.png", "Dice", name)
        assert all((tmp_path / f"{k}{i}.png").stat().st_size > 0 for k in "crld")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from breastdx.evaluation.plots import save_figure

    fig, ax = plt.subplots()
    ax.set_xlabel("cost $5 to $6")
    save_figure(fig, tmp_path / "t.png", title="$x$")
    texts = [t for t in fig.findobj(Text) if "$" in t.get_text()]
    assert len(texts) == 2 and not any(t.get_parse_math() for t in texts)  # drawn as written, dollars included
