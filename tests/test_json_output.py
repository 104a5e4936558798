"""The JSON files breastdx writes are standard JSON (NaN and infinity written as null), and the readers that compute
with their figures read null back as NaN."""

import json
import math

import numpy as np
import pytest
import torch

from breastdx.runs import json_ready, number, write_json


def _strict(text: str):
    """``json.loads`` as a non-Python reader (jq, JavaScript's JSON.parse): NaN and Infinity are refused."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_nan_and_infinity_as_null(tmp_path):
    data = {"auroc": {"value": float("nan"), "ci95": [float("nan"), np.float32("inf")]}, "n": np.int64(3),
            "per_class": np.array([0.5, np.nan, -np.inf]), "pair": (np.float64("nan"), 1.5), "ok": 0.25,
            "path": tmp_path, "none": None, "nested": [{"x": float("-inf")}]}
    write_json(data, tmp_path / "metrics.json")
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert _strict(text) == {"auroc": {"value": None, "ci95": [None, None]}, "n": 3, "per_class": [0.5, None, None],
                             "pair": [None, 1.5], "ok": 0.25, "path": str(tmp_path), "none": None,
                             "nested": [{"x": None}]}
    assert json_ready({"a": [1, "b", True]}) == {"a": [1, "b", True]}
    with pytest.raises(TypeError, match="set"):
        write_json({"s": {1}}, tmp_path / "bad.json")


def test_number_reads_null_back_as_nan():
    assert math.isnan(number(None)) and number(0.5) == 0.5 and number(2) == 2.0
    folds = [number(v) for v in _strict(json.dumps(json_ready([0.8, float("nan"), 0.6])))]
    assert float(np.nanmean(folds)) == pytest.approx(0.7)


def test_a_resumed_fit_reads_a_nan_best_score_back(tmp_path, monkeypatch):
    """A fit's kept figures (checkpoints/fitted.json, read back when its run resumes) with no validation score: the
    file is standard JSON and the resumed fit's best score is NaN again, not a float(None) error."""
    from breastdx.runs import RUN_DIR_ENV
    from breastdx.training import trainer
    from breastdx.training.trainer import CHECKPOINT_DIR, FITTED, RESUME_ENV, FitResult

    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(RESUME_ENV, "1")
    net = torch.nn.Linear(2, 1)
    info = {"best_monitor_value": float("nan"), "epochs_run": 1, "monitor": "val_dice"}
    trainer._keep_fitted(tmp_path, FitResult(net, None, float("nan"), 1, 2.5, True, dict(info)))
    assert _strict((tmp_path / CHECKPOINT_DIR / f"{FITTED}.json").read_text())["best_score"] is None
    again = trainer._fitted(tmp_path, torch.nn.Linear(2, 1))
    assert math.isnan(again.best_score) and math.isnan(again.info["best_monitor_value"])
    assert (again.best_epoch, again.epochs_run, again.train_seconds) == (None, 1, 2.5)
