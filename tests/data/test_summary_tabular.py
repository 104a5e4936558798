"""``data summary wdbc``: per-feature figures with golden values on small arrays, and on the real table (scikit-learn's
copy and the same cases as a ``wdbc.data`` file, where a repeated case is found)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from breastdx.data.summary_tabular import correlated_pairs, duplicate_cases, feature_rows


def test_feature_figures_golden_values():
    X = np.array([[1.0, 5.0, 2.0], [2.0, 5.0, 4.0], [3.0, 5.0, 6.0], [4.0, 5.0, 8.0]])
    y = np.array([0, 0, 1, 1])
    rows = {r["feature"]: r for r in feature_rows(X, y, ("a", "flat", "b"))}
    a = rows["a"]
    assert (a["mean_benign"], a["mean_malignant"]) == (1.5, 3.5)
    assert a["sd_benign"] == pytest.approx(np.sqrt(0.5))
    assert a["cohens_d"] == pytest.approx(2.0 / np.sqrt(0.5)) and a["auroc"] == 1.0
    assert rows["flat"]["cohens_d"] == 0.0 and rows["flat"]["auroc"] == 0.5
    assert [r["feature"] for r in feature_rows(X, y, ("a", "flat", "b"))][-1] == "flat"  # least separating last
    assert feature_rows(-X, y, ("a", "flat", "b"))[0]["auroc"] == 0.0  # lower values malignant: under 0.5
    pairs = correlated_pairs(X, ("a", "flat", "b"))
    assert pairs == [{"a": "a", "b": "b", "r": pytest.approx(1.0)}]  # the constant column correlates with nothing
    assert duplicate_cases(np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]), np.array(["p", "q", "r"])) == [["p", "r"]]


def test_the_real_table_and_a_repeated_case(tmp_path):
    from typer.testing import CliRunner

    from breastdx.cli import app
    from breastdx.data.wdbc import load_wdbc

    runner = CliRunner()
    result = runner.invoke(app, ["data", "summary", "wdbc", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["class_counts"] == {"benign": 357, "malignant": 212} and summary["duplicates"] == []
    best = summary["features"][0]
    assert best["feature"] == "worst perimeter" and best["auroc"] == pytest.approx(0.9755, abs=5e-4)
    assert {"a": "mean radius", "b": "mean perimeter"} in [{"a": p["a"], "b": p["b"]}
                                                          for p in summary["correlated_pairs"]]
    assert (tmp_path / "s" / "features_by_class.png").stat().st_size > 10_000
    assert "worst perimeter" in result.output and "357 benign, 212 malignant" in result.output

    sk = load_wdbc()
    lines = [",".join([f"9{i:05d}", "M" if sk.y[i] else "B", *[repr(float(v)) for v in sk.X[i]]]) for i in range(40)]
    lines.append(",".join(["999999", "M" if sk.y[3] else "B", *[repr(float(v)) for v in sk.X[3]]]))  # case 3 again
    data = tmp_path / "wdbc.data"
    data.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["data", "summary", "wdbc", "--data-file", str(data), "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert summary["n_items"] == 41 and summary["duplicates"] == [["900003", "999999"]]
    assert "exact duplicate cases: 1" in result.output
    bad = runner.invoke(app, ["data", "summary", "busi", "--data-file", str(data), "--out", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "--data-file is for wdbc" in bad.output
