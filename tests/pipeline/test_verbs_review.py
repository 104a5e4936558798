"""Review of the image-classification verbs (:mod:`breastdx.pipeline.verbs`)."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app


@pytest.fixture()
def uncalibrated_ensemble(tmp_path):
    """The shipped breastmnist ensemble as :func:`breastdx.pipeline.ensemble.write_ensemble` leaves a classifier
    ensemble before ``calibrate``: no threshold, no prediction sets."""
    from breastdx.zoo import shipped_models

    folder = tmp_path / "ensemble"
    shutil.copytree(shipped_models()["breastmnist"], folder)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    assert meta["architecture"] == "cls_ensemble"
    meta.update(threshold=None, conformal=None)
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def test_evaluate_of_an_uncalibrated_ensemble_says_to_calibrate_it(uncalibrated_ensemble, tmp_path):
    """It read and predicted the whole split, then ended with "unexpected error (TypeError): float() argument must
    be ... not 'NoneType'" (the threshold of the operating-point figures)."""
    from breastdx.config import ConfigError
    from breastdx.tasks import get_task

    with pytest.raises(ConfigError, match=r"no operating threshold .* breastdx calibrate breastmnist --model .*"
                                          r"--fit temperature"):
        get_task("breastmnist").evaluate(uncalibrated_ensemble, tmp_path / "no-data", tmp_path / "run", {})
    result = CliRunner().invoke(app, ["evaluate", "breastmnist", "--model", str(uncalibrated_ensemble),
                                      "--out", str(tmp_path / "cli")])
    assert result.exit_code == 2, result.output
    assert "calibrate breastmnist" in result.output and "unexpected error" not in result.output
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_predict_of_an_uncalibrated_ensemble_labels_at_argmax(uncalibrated_ensemble, tmp_path):
    """What the ensemble's docstring promises before calibration, and what evaluate's refusal leaves open."""
    import numpy as np
    from PIL import Image

    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 41), dtype=np.uint8)).save(image)
    result = CliRunner().invoke(app, ["predict", "breastmnist", str(image), "--model", str(uncalibrated_ensemble),
                                      "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "threshold none" in result.output.replace("\n", " ")
    assert Path(tmp_path / "p" / "predictions.csv").is_file()
