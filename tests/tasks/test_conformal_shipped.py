"""Prediction sets of the shipped busi-cls model on the real BUSI data: `breastdx calibrate` reproduces the shipped
conformal record from the validation split, and the test split gives the coverage and set size its card states
(issue 15's target: coverage >= 0.88 at the 90% level, mean set size < 1.6)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.zoo import shipped_models

runner = CliRunner()


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = os.environ.get("BREASTDX_DATA")
    if not root or not (Path(root) / "busi").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to a data root holding busi/")
    return Path(root)


def test_calibrate_reproduces_the_shipped_record(data_root, tmp_path):
    shipped = shipped_models()["busi-cls"]
    model = tmp_path / "busi-cls"
    shutil.copytree(shipped, model)
    meta = json.loads((model / "meta.json").read_text())
    record = meta.pop("conformal")
    (model / "meta.json").write_text(json.dumps(meta))
    result = runner.invoke(app, ["evaluate", "busi-cls", "--model", str(model), "--data-dir", str(data_root),
                                 "--out", str(tmp_path / "no-sets"), "--conformal-level", "0.9"])
    assert result.exit_code == 2 and "no conformal record" in result.output
    result = runner.invoke(app, ["calibrate", "busi-cls", "--model", str(model), "--data-dir", str(data_root),
                                 "--out", str(tmp_path / "cal")])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "meta.json").read_text())["conformal"] == record
    assert json.loads((tmp_path / "cal" / "conformal.json").read_text()) == record


def test_shipped_busi_cls_sets_on_the_test_split(data_root, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "busi-cls", "--data-dir", str(data_root), "--out", str(out),
                                 "--localisation", "false", "--n-bootstrap", "200"])
    assert result.exit_code == 0, result.output
    c = json.loads((out / "metrics.json").read_text())["conformal"]
    assert (c["method"], c["level"], c["n"], c["n_calibration"]) == ("aps", 0.9, 152, 76)
    assert c["conformal_coverage"]["value"] == pytest.approx(135 / 152)  # 0.888
    assert c["set_size_counts"] == {"1": 86, "2": 60, "3": 6}  # mean 1.474
    assert c["conformal_coverage"]["value"] >= 0.88 and c["mean_set_size"]["value"] < 1.6
    card = (shipped_models()["busi-cls"] / "MODEL_CARD.md").read_text()
    assert "coverage 0.888 [0.828, 0.929]" in card and "mean set size 1.474" in card
    result = runner.invoke(app, ["evaluate", "busi-cls", "--data-dir", str(data_root), "--out", str(tmp_path / "e2"),
                                 "--localisation", "false", "--n-bootstrap", "50", "--conformal-level", "0.95"])
    assert result.exit_code == 0, result.output
    wider = json.loads((tmp_path / "e2" / "metrics.json").read_text())["conformal"]
    assert wider["level"] == 0.95 and wider["mean_set_size"]["value"] > c["mean_set_size"]["value"]
