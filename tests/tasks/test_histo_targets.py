"""idc and breakhis runs state the targets README's Results gives them (metrics.json, report.html, the console),
as pcam, breastmnist and busi-cls runs do."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app

runner = CliRunner()
TINY = ["--epochs", "1", "--max-train-batches", "2", "--batch-size", "8", "--n-bootstrap", "20", "--progress-bar",
        "false", "--threads", "1", "--gradcam-examples", "0", "--image-size", "32", "--archs", "compact_cnn"]


@pytest.mark.parametrize("task, folder, extra, targets", [
    ("idc", "idc", ["--max-cases", "40"], {"balanced_accuracy": 0.85, "f1": 0.77}),
    ("breakhis", "breakhis_224", [], {"auroc": 0.90}),
])
def test_a_training_run_states_its_tasks_targets(tmp_path: Path, task, folder, extra, targets):
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / folder).is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", task, "--data-dir", env, "--out", str(out), *TINY, *extra])
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "metrics.json").read_text())["benchmark"]
    assert {k: bench[f"{k}_target"] for k in targets} == targets
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert bench["reached"] == all(metrics[k]["value"] >= t for k, t in targets.items())
    assert "Targets: " in (out / "report.html").read_text() and "Targets " in result.output
