"""``breastdx serve --lesion-aware``: the shipped busi-cls answers with its lesion-crop fusion, as the CLI does."""

from __future__ import annotations

import csv

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from breastdx.cli import app as cli_app
from breastdx.serve import ServeSettings, create_app
from breastdx.serve.models import ModelRegistry
from breastdx.zoo import shipped_models


@pytest.fixture(scope="module")
def busi_cls_dir():
    folder = shipped_models().get("busi-cls")
    if folder is None or not (folder / "lesion_crop" / "meta.json").is_file():
        pytest.skip("the shipped busi-cls with its lesion-crop model is not installed")
    return folder


def _answer(registry, tmp_path, data: bytes, name: str) -> dict:
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{tmp_path / 'p.sqlite'}", display_max_side=128)
    with TestClient(create_app(settings, registry=registry)) as client:
        r = client.post("/v1/predict/busi-cls", files={"file": (name, data, "image/png")})
    assert r.status_code == 200, r.text
    return r.json()["classification"]


def test_lesion_aware_service_answers_the_cli_fusion(busi_cls_dir, busi_image, ultrasound_png, tmp_path):
    fused = ModelRegistry.load([busi_cls_dir], warmup=False, gradcam=False, lesion_aware=True)
    plain = ModelRegistry.load([busi_cls_dir], warmup=False, gradcam=False)
    model = fused.models["busi-cls"]
    assert model.predictor.fusion is not None and "+lesion_crop." in model.version
    assert plain.models["busi-cls"].predictor.fusion is None and "+" not in plain.models["busi-cls"].version
    a = _answer(fused, tmp_path / "a", ultrasound_png, busi_image.name)
    b = _answer(plain, tmp_path / "b", ultrasound_png, busi_image.name)
    assert a["lesion_aware"] is True and b["lesion_aware"] is False
    assert a["model"]["version"] == model.version and a["prediction_set"] is None
    assert a["probabilities"] != b["probabilities"]
    result = CliRunner().invoke(cli_app, ["predict", "busi-cls", str(busi_image), "--model", str(busi_cls_dir),
                                          "--lesion-aware", "true", "--gradcam", "false", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "cli" / "predictions.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    for name, p in a["probabilities"].items():
        assert abs(float(row[f"p_{name}"]) - p) < 1e-3, (name, row)
    assert row["label"] == a["label"]


def test_lesion_aware_setting_round_trips_for_worker_processes():
    settings = ServeSettings(auth=False, lesion_aware=True)
    assert ServeSettings.from_json(settings.to_json()).lesion_aware is True
