"""Every shipped ultrasound model's card states its figures on the shared external samples, and they are the figures
``breastdx evaluate TASK --external DIR`` gives now (issue 13: the card travels with the model)."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.evaluation.tables import ci_text
from breastdx.zoo import shipped_models

runner = CliRunner()
MAPPING = ["--label-map", "normal=normal_or_benign,benign=normal_or_benign"]


@pytest.mark.parametrize("model, task, options, metric", [
    ("busi-cls", "busi-cls", [], "auroc"), ("breastmnist", "breastmnist", MAPPING, "auroc"),
    ("breastmnist-single", "breastmnist", MAPPING, "auroc"), ("busi-seg", "busi-seg", [], "dice")])
def test_the_card_states_the_external_figures_evaluate_gives(tmp_path, model, task, options, metric):
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "bus_uclm_sample").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    card = (shipped_models()[model] / "MODEL_CARD.md").read_text()
    section = card.split("## External evaluation", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("`")[1]: line for line in section.splitlines() if line.startswith("| ") and "`" in line}
    assert set(rows) == {"breast_lesions_usg_sample", "bus_uclm_sample"}
    out = tmp_path / "ext"
    # float32: the cards' dtype, which every CPU runs (auto picks bfloat16 on some, moving the third decimal)
    result = runner.invoke(app, ["evaluate", task, "--model", model, "--external", str(Path(env) / "bus_uclm_sample"),
                                 "--out", str(out), "--dtype", "float32", *options])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 15 and "| 15 " in rows["bus_uclm_sample"]
    assert ci_text(metrics["metrics"][metric]) in rows["bus_uclm_sample"]
