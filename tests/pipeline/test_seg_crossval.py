"""busi-seg cross-validation: grouped folds of the train + val cases, the base test split left out."""

import json
import os
from pathlib import Path

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
    folds = json.loads((out / "folds.json").read_text())
    base = json.loads((out / "base_split.json").read_text())
    assert not set(base["test"]) & {n for f in folds["folds"] for n in f["test"] + f["val"]}
    for f in (0, 1):
        assert (out / "folds" / f"f{f}" / "model" / "meta.json").is_file()
        split = json.loads((out / "folds" / f"f{f}" / "fold_split.json").read_text())
        assert set(base["test"]) <= {e["name"] for e in split["excluded"]}
    lines = (out / "oof_per_image.csv").read_text().splitlines()
    assert lines[0].startswith("case,label,fold") and len(lines) == 19
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
    assert all("cached" in (side / "folds" / f"f{f}" / "fold.log").read_text() for f in (0, 1))
