"""busi-seg cross-validation: grouped folds of the train + val cases, the base test split left out."""

import html
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.data.splits import SplitFile
from breastdx.pipeline.seg_crossval import BASE_TEST_REASON, busi_fold_splits


def _base():
    names = [f"{c} ({i})" for c, n in (("normal", 20), ("benign", 50), ("malignant", 30)) for i in range(1, n + 1)]
    test = names[::5]
    rest = [n for n in names if n not in test]
    val = rest[::8]
    train = [n for n in rest if n not in val]
    groups = [["benign (2)", "benign (3)", "benign (4)"], ["malignant (2)", "malignant (3)"], ["benign (1)", "benign (6)"]]
    excluded = [{"name": "benign (51)", "label": "benign", "reason": "contradictory", "group": ["benign (51)"]}]
    return SplitFile(path=None, data_checksum="abc", seed=0, ratios=(0.7, 0.1, 0.2), train=train, val=val, test=test,
                     groups=groups, excluded=excluded)


def _labels(base):
    return {n: n.split(" (")[0] for n in base.train + base.val + base.test}


def test_folds_cover_train_and_val_once_keep_groups_and_leave_the_test_out():
    base = _base()
    folds = busi_fold_splits(base, _labels(base), 5, seed=0)
    assert len(folds) == 5
    pool = set(base.train) | set(base.val)
    tested = [n for f in folds for n in f.test]
    assert sorted(tested) == sorted(pool)  # every train / val case tested exactly once
    for f in folds:
        parts = [set(f.train), set(f.val), set(f.test)]
        assert set().union(*parts) == pool and sum(map(len, parts)) == len(pool)  # disjoint, complete
        excluded = {e["name"]: e["reason"] for e in f.excluded}
        assert all(excluded[n] == BASE_TEST_REASON for n in base.test) and excluded["benign (51)"] == "contradictory"
        for g in base.groups:  # near-duplicate groups never cross parts
            members = [m for m in g if m in pool]
            assert sum(any(m in p for m in members) for p in parts) <= 1, g
        assert {n.split(" (")[0] for n in f.test} == {"normal", "benign", "malignant"}  # stratified
        assert 0.08 < len(f.val) / (len(f.train) + len(f.val)) < 0.2  # the base split's share of validation
    assert [f.test for f in folds] == [f.test for f in busi_fold_splits(base, _labels(base), 5, seed=0)]  # seeded
    with pytest.raises(ValueError):
        busi_fold_splits(base, _labels(base), 1, seed=0)


def test_cli_cross_validation_on_real_busi(tmp_path):
    root = Path(os.environ.get("BREASTDX_DATA", ""))
    if not (root / "busi").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA")
    out = tmp_path / "cv"
    result = CliRunner().invoke(app, ["train", "busi-seg", "--data-dir", str(root), "--out", str(out), "--cv-folds",
                                      "2", "--epochs", "1", "--max-train-batches", "2", "--image-size", "32",
                                      "--max-cases", "9", "--batch-size", "4", "--n-bootstrap", "50",
                                      "--progress-bar", "false", "--threads", "1"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "cross_validation" and metrics["k"] == 2 and len(metrics["per_fold"]) == 2
    assert metrics["n"] == 18 and 0 <= metrics["metrics"]["dice"]["value"] <= 1
    by_group = metrics["metrics_by_group"]
    assert by_group["dice"]["value"] == pytest.approx(metrics["metrics"]["dice"]["value"])
    assert by_group["dice"]["n_images"] == metrics["metrics"]["dice"]["n"] >= by_group["dice"]["n_groups"]
    assert "near-duplicate groups" in metrics["metrics_note"] and "image diagonal" in metrics["metrics_note"]
    card = " ".join((out / "folds" / "f0" / "model" / "MODEL_CARD.md").read_text().split())
    assert "held out (the test split of the base split: kept out of cross-validation)" in card
    folds = json.loads((out / "folds.json").read_text())
    base = json.loads((out / "base_split.json").read_text())
    assert not set(base["test"]) & {n for f in folds["folds"] for n in f["test"] + f["val"]}
    for f in (0, 1):
        assert (out / "folds" / f"f{f}" / "model" / "meta.json").is_file()
        split = json.loads((out / "folds" / f"f{f}" / "fold_split.json").read_text())
        assert set(base["test"]) <= {e["name"] for e in split["excluded"]}
    lines = (out / "oof_per_image.csv").read_text().splitlines()
    assert lines[0].startswith("case,label,fold") and len(lines) == 19
    _assert_cv_report(out, metrics)
    # the fold ensemble is a model folder that evaluate reads on the base split's test cases, which no member saw
    ens = json.loads((out / "ensemble" / "meta.json").read_text())
    assert ens["architecture"] == "seg_ensemble" and len(ens["architecture_args"]["members"]) == 2
    assert json.loads((out / "ensemble" / "split.json").read_text())["test"] == base["test"]
    result = CliRunner().invoke(app, ["evaluate", "busi-seg", "--model", str(out / "ensemble"), "--data-dir", str(root),
                                      "--out", str(tmp_path / "ev"), "--n-bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] == len(base["test"])
    # the folds trained side by side, each in its own process: the same runs, the same out-of-fold scores
    side = tmp_path / "cv-workers"
    result = CliRunner().invoke(app, ["train", "busi-seg", "--data-dir", str(root), "--out", str(side), "--cv-folds",
                                      "2", "--epochs", "1", "--max-train-batches", "2", "--image-size", "32",
                                      "--max-cases", "9", "--batch-size", "4", "--n-bootstrap", "50",
                                      "--progress-bar", "false", "--threads", "1", "--cv-workers", "2"])
    assert result.exit_code == 0, result.output
    assert (side / "oof_per_image.csv").read_text() == (out / "oof_per_image.csv").read_text()
    logs = [(side / "folds" / f"f{f}" / "fold.log").read_text() for f in (0, 1)]
    assert all("cached" in log for log in logs)
    # each fold's own split file is used without a warning that the (default) split options do not apply
    assert not any("do not apply" in log for log in logs)
    # a cross-validation stopped after its folds had finished, resumed: the folds are read back, the run ends with
    # its metrics and its report
    for name in ("report.html", "metrics.json"):
        (out / name).unlink()
    (out / "error.txt").write_text("stopped while writing the pooled figures\n")
    result = CliRunner().invoke(app, ["train", "busi-seg", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["metrics"]["dice"] == metrics["metrics"]["dice"]
    _assert_cv_report(out, resumed)


def _assert_cv_report(out, metrics):
    """The run's own report.html: the research-use notice, the pooled Dice over images and over near-duplicate
    groups as metrics.json gives them, what was held out, and a link to every fold's report."""
    from breastdx import RESEARCH_USE_ONLY
    from breastdx.evaluation.tables import ci_text

    page = html.unescape((out / "report.html").read_text())
    assert RESEARCH_USE_ONLY in page and "cv_folds" in page  # config.yaml's options
    assert ci_text(metrics["metrics"]["dice"]) in page
    assert f"Dice {ci_text(metrics['metrics_by_group']['dice'])} over benign + malignant images" in page
    n_test = len(json.loads((out / "base_split.json").read_text())["test"])
    assert f"Held out: the base split's {n_test} test cases, read by no fold" in page
    for f in range(metrics["k"]):
        assert f'<a href="folds/f{f}/report.html">' in page and (out / "folds" / f"f{f}" / "report.html").is_file()
    assert page.count('<a href="folds/f') == metrics["k"]


def test_group_intervals_resample_near_duplicate_groups():
    """A lesion filed as three frames counts once per resample: the interval over groups is wider than over images,
    and with no group it is the image bootstrap of the same values."""
    from breastdx.evaluation.ci import patient_bootstrap
    from breastdx.pipeline.seg_crossval import group_intervals

    rng = np.random.default_rng(0)
    dice = np.repeat(rng.uniform(0.2, 1.0, 20), 3)  # 20 lesions, 3 identical frames each
    rows = [{"case": f"benign ({i})", "label": "benign", "dice": d, "iou": d / (2 - d), "hd95": 10.0,
             "missed": False, "false_positive": False} for i, d in enumerate(dice)]
    rows += [{"case": f"normal ({i})", "label": "normal", "dice": np.nan, "iou": np.nan, "hd95": np.nan,
              "missed": False, "false_positive": i % 2 == 0} for i in range(6)]
    groups = [[f"benign ({3 * k + j})" for j in range(3)] for k in range(20)]
    grouped, plain = group_intervals(rows, groups, n_boot=500), group_intervals(rows, [], n_boot=500)
    assert grouped["dice"]["value"] == plain["dice"]["value"] == pytest.approx(dice.mean())
    assert (grouped["dice"]["n_images"], grouped["dice"]["n_groups"], plain["dice"]["n_groups"]) == (60, 20, 60)
    width = {k: r["dice"]["ci95"][1] - r["dice"]["ci95"][0] for k, r in (("g", grouped), ("p", plain))}
    assert width["g"] > 1.4 * width["p"]  # about sqrt(3) wider
    expected = patient_bootstrap(lambda idx: float(dice[idx].mean()), np.arange(60).astype(str), n_boot=500)
    assert plain["dice"]["ci95"] == expected["ci95"]
    assert grouped["normal_fp_share"]["value"] == 0.5 and grouped["normal_fp_share"]["n_groups"] == 6
    assert grouped["missed_share"]["value"] == 0.0
