"""``breastdx data summary wdbc``: the cytology table summarised, feature by feature.

For the 569 cases of the Wisconsin Diagnostic Breast Cancer data (scikit-learn's copy, or a ``wdbc.data`` / CSV given
with ``--data-file``, read by :func:`breastdx.data.wdbc.load_wdbc`, which refuses a missing, non-numeric or
out-of-range value and names its line), it writes ``summary.json``, ``report.html`` and ``features_by_class.png``:

* the class counts (malignant is the positive class);
* per feature (in its unit, :data:`breastdx.data.wdbc.FEATURE_UNITS`): the mean and standard deviation per class,
  the standardised mean difference (Cohen's d, pooled standard deviation) and the AUROC of the feature alone for
  malignant (Mann-Whitney; 0.5 is no separation, under 0.5 means lower values are malignant), sorted by how far the
  AUROC is from 0.5;
* exact duplicate cases (identical 30 values), and the pairs of features that correlate at |r| >= 0.95 (radius,
  perimeter and area measure the same size: a model's coefficients or SHAP values split their weight).

References:
    Street, W.N., Wolberg, W.H. & Mangasarian, O.L. (1993). Nuclear feature extraction for breast tumor diagnosis.
    Proc. SPIE 1905, 861-870. doi:10.1117/12.148698
    Wolberg, W. et al. (1995). Breast Cancer Wisconsin (Diagnostic). UCI Machine Learning Repository.
    doi:10.24432/C5DW2B
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

HIGH_CORRELATION = 0.95
"""Feature pairs correlating at least this much (absolute Pearson r) are listed."""


def feature_rows(X: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per-feature figures by class, sorted by ``|AUROC - 0.5|`` (largest first).

    Args:
        X: Features, float ``(n, k)``.
        y: Labels, int ``(n,)``, 1 = malignant (both classes present).
        names: The ``k`` feature names.

    Returns:
        One dict per feature: ``feature``, ``mean_benign``, ``sd_benign``, ``mean_malignant``, ``sd_malignant``,
        ``cohens_d`` (malignant minus benign over the pooled standard deviation; 0 when both are constant),
        ``auroc`` (of the feature alone for malignant, in [0, 1]), ``min``, ``max``.
    """
    from sklearn.metrics import roc_auc_score

    rows = []
    pos, neg = X[y == 1], X[y == 0]
    for j, name in enumerate(names):
        a, b = pos[:, j], neg[:, j]
        pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
        rows.append({"feature": name, "mean_benign": float(b.mean()), "sd_benign": float(b.std(ddof=1)),
                     "mean_malignant": float(a.mean()), "sd_malignant": float(a.std(ddof=1)),
                     "cohens_d": float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0,
                     "auroc": float(roc_auc_score(y, X[:, j])), "min": float(X[:, j].min()),
                     "max": float(X[:, j].max())})
    return sorted(rows, key=lambda r: -abs(r["auroc"] - 0.5))


def correlated_pairs(X: np.ndarray, names: tuple[str, ...], threshold: float = HIGH_CORRELATION) -> list[dict]:
    """Feature pairs with ``|r| >= threshold`` (Pearson), strongest first: ``{"a", "b", "r"}``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(X, rowvar=False)
    pairs = [{"a": names[i], "b": names[j], "r": float(r[i, j])}
             for i in range(len(names)) for j in range(i + 1, len(names)) if abs(r[i, j]) >= threshold]
    return sorted(pairs, key=lambda p: -abs(p["r"]))


def duplicate_cases(X: np.ndarray, ids: np.ndarray) -> list[list[str]]:
    """Groups of case ids whose 30 values are identical (each group of two or more)."""
    groups: dict[bytes, list[str]] = {}
    for row, case in zip(np.ascontiguousarray(X), ids):
        groups.setdefault(row.tobytes(), []).append(str(case))
    return [g for g in groups.values() if len(g) > 1]


def summarize_wdbc(out_dir: str | Path, data_file: str | Path | None = None) -> dict[str, Any]:
    """Summarise the WDBC table (module docstring) into ``out_dir``.

    Args:
        out_dir: Output folder (created when missing).
        data_file: A ``wdbc.data`` or CSV with a diagnosis column; None for scikit-learn's copy.

    Returns:
        ``{"dataset", "source", "n_items", "class_counts", "features", "duplicates", "correlated_pairs",
        "files"}`` (also written as ``summary.json``).

    Raises:
        DataError: If the file is invalid (the message names the line) or has no diagnosis column.
        FileNotFoundError: If ``data_file`` does not exist.
    """
    import matplotlib.pyplot as plt

    from breastdx.data.errors import DataError
    from breastdx.data.wdbc import CLASS_NAMES, FEATURE_NAMES, FEATURE_UNITS, load_wdbc
    from breastdx.evaluation.plots import save_figure
    from breastdx.evaluation.report import HtmlReport
    from breastdx.runs import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = load_wdbc(data_file)
    if len(np.unique(table.y)) < 2:
        raise DataError(f"{table.source}: all {table.n} cases are {CLASS_NAMES[int(table.y[0])]}; a summary by "
                        f"class needs both.")
    features = feature_rows(table.X, table.y, FEATURE_NAMES)
    pairs = correlated_pairs(table.X, FEATURE_NAMES)
    duplicates = duplicate_cases(table.X, table.ids)

    top = features[:6]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    for ax, f in zip(axes.ravel(), top):
        j = FEATURE_NAMES.index(f["feature"])
        bins = np.linspace(f["min"], f["max"], 31)
        for label, colour in ((0, "#4060a0"), (1, "#b03060")):
            ax.hist(table.X[table.y == label, j], bins=bins, alpha=0.6, color=colour, label=CLASS_NAMES[label])
        ax.set_title(f"{f['feature']} (AUROC {f['auroc']:.3f})", fontsize=9)
        ax.set_xlabel(FEATURE_UNITS[f["feature"]], fontsize=8)
    axes[0, 0].legend(fontsize=8)
    figure = save_figure(fig, out / "features_by_class.png")
    counts = {CLASS_NAMES[k]: int((table.y == k).sum()) for k in (0, 1)}
    result = {"dataset": "wdbc", "source": table.source, "checksum": table.checksum, "n_items": table.n,
              "class_counts": counts, "features": features, "duplicates": duplicates, "correlated_pairs": pairs,
              "files": ["summary.json", "report.html", figure.name]}
    write_json(result, out / "summary.json")

    rep = HtmlReport("breastdx — wdbc: the cytology features")
    rep.paragraph(f"{table.n} cases from {table.source} (SHA-256 of the values {table.checksum[:12]}): "
                  + ", ".join(f"{n} {c}" for c, n in counts.items()) + f". Exact duplicate cases: {len(duplicates)}"
                  + (" (" + "; ".join(", ".join(g) for g in duplicates) + ")" if duplicates else "") + ".")
    rep.figure(figure, "The six features that separate the classes most, by class")
    rep.table(["feature", "unit", "benign mean (sd)", "malignant mean (sd)", "Cohen's d", "AUROC alone", "range"],
              [[f["feature"], FEATURE_UNITS[f["feature"]], f"{f['mean_benign']:.4g} ({f['sd_benign']:.3g})",
                f"{f['mean_malignant']:.4g} ({f['sd_malignant']:.3g})", f"{f['cohens_d']:.2f}", f"{f['auroc']:.3f}",
                f"{f['min']:.4g}-{f['max']:.4g}"] for f in features])
    rep.paragraph(f"{len(pairs)} feature pairs correlate at |r| >= {HIGH_CORRELATION} (they measure the same thing; a "
                  f"linear model's coefficients and SHAP values share their weight among them).")
    rep.table(["feature", "feature", "r"], [[p["a"], p["b"], f"{p['r']:.3f}"] for p in pairs])
    rep.write(out / "report.html")
    logger.info("summary of %d wdbc cases written to %s", table.n, out)
    return result
