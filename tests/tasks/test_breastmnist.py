"""The breastmnist task through the command line: a synthetic .npz (always) and the real file (BREASTDX_DATA)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.zoo import shipped_models

runner = CliRunner()
TINY = ["--epochs", "1", "--max-train-batches", "2", "--image-size", "32", "--batch-size", "8", "--n-bootstrap", "50",
        "--progress-bar", "false", "--archs", "unet_multitask", "--arch-args", '{"unet_multitask": {"decoder": false}}']


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """A small file in MedMNIST's layout: bright blobs for label 0 (malignant), labels stored (N, 1)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 20), ("test", 20)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        images[labels == 0, 10:18, 10:18] = 230
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    path = tmp_path_factory.mktemp("npz") / "breastmnist.npz"
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="module")
def tiny_run(npz, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bm") / "run"
    result = runner.invoke(app, ["train", "breastmnist", "--out", str(out), "--data-file", str(npz), *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_tiny_train_on_a_synthetic_file(tiny_run):
    for name in ("config.yaml", "versions.json", "split.json", "metrics.json", "report.html", "roc.png",
                 "confusion.png", "reliability.png", "model/model.safetensors", "model/meta.json",
                 "model/MODEL_CARD.md"):
        assert (tiny_run / name).is_file(), name
    assert not list(tiny_run.rglob("*.ckpt"))
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["task"] == "breastmnist" and metrics["n"] == 20 and "official" in metrics["split"]
    for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "auroc", "brier",
                 "ece", "macro_auroc"):
        assert len(metrics["metrics"][name]["ci95"]) == 2, name
    bench = metrics["benchmark"]
    assert bench["published"]["ResNet-18 (28)"] == {"auroc": 0.901, "accuracy": 0.863}  # renamed from medmnist_v2
    assert bench["auroc_target"] == 0.93 and bench["reached"] in (True, False)
    meta = json.loads((tiny_run / "model" / "meta.json").read_text())
    assert meta["class_names"] == ["normal_or_benign", "malignant"] and meta["preprocessing"]["source_size"] == 28
    assert meta["architecture_args"]["decoder"] is False
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["summary"]["test"]["malignant"] == 10  # MedMNIST label 0 counted as malignant
    assert "MedMNIST v2" in (tiny_run / "report.html").read_text()


def test_model_card_table_names_each_figures_operating_point(tiny_run):
    """The card's table held `sensitivity` (at the threshold) beside `sensitivity_malignant` (at argmax), two
    sensitivities of one class, without saying which was which; its rows now name the point, as report.html does."""
    card = (tiny_run / "model" / "MODEL_CARD.md").read_text()
    for row in ("| sensitivity @ op |", "| npv @ op |", "| sensitivity_malignant @ argmax |",
                "| accuracy @ argmax |", "| auroc |"):
        assert row in card, row


def test_evaluate_and_predict_a_trained_model(tiny_run, npz, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "breastmnist", "--model", str(tiny_run / "model"), "--out", str(out),
                                 "--data-file", str(npz), "--n-bootstrap", "50"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    trained = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["metrics"]["auroc"]["value"] == pytest.approx(trained["metrics"]["auroc"]["value"], abs=1e-6)
    img = tmp_path / "x.png"
    Image.fromarray(np.full((70, 90), 128, np.uint8)).save(img)
    result = runner.invoke(app, ["predict", "breastmnist", str(img), "--model", str(tiny_run / "model"),
                                 "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["label"] in ("normal_or_benign", "malignant")


def test_an_ensemble_of_trained_models_is_calibrated_then_scored(tiny_run, npz, tmp_path):
    """write_ensemble, then ``calibrate --fit temperature,conformal,ood`` fits what training fits; two copies of one
    model rank the test images as that model does (AUROC unchanged by the temperatures)."""
    from breastdx.pipeline.ensemble import write_ensemble

    ens = tmp_path / "ens"
    write_ensemble([tiny_run / "model", tiny_run / "model"], ens)
    assert json.loads((ens / "meta.json").read_text())["threshold"] is None
    result = runner.invoke(app, ["calibrate", "breastmnist", "--model", str(ens), "--data-file", str(npz), "--fit",
                                 "temperature,conformal,ood", "--out", str(tmp_path / "cal")])
    assert result.exit_code == 0, result.output
    meta = json.loads((ens / "meta.json").read_text())
    assert 0 <= meta["threshold"] <= 1 and meta["temperature"] > 0 and "sensitivity >= 0.9" in meta["threshold_rule"]
    assert meta["conformal"]["n_calibration"] == 20 and (ens / meta["ood"]["bank_file"]).is_file()
    assert meta["calibrated"]["fitted"] == ["temperature", "conformal", "ood"]
    assert meta["calibrated"]["threshold_before"] is None and "val split" in meta["calibrated"]["split"]
    card = (ens / "MODEL_CARD.md").read_text(encoding="utf-8")  # the card says the threshold fitted, not "none"
    assert f"- Decision threshold: {meta['threshold']}" in card.splitlines()
    assert "## Calibrated after training" in card and "(before: n/a)" in card
    import yaml

    config = yaml.safe_load((tmp_path / "cal" / "config.yaml").read_text())  # the run folder says what was fitted
    assert config["fit"] == ["temperature", "conformal", "ood"] and config["model"] == str(ens)
    assert Path(config["split_file"]).is_file() and config["target_sensitivity"] == -1
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "breastmnist", "--model", str(ens), "--out", str(out), "--data-file",
                                 str(npz), "--n-bootstrap", "50", "--tta", "none"])
    assert result.exit_code == 0, result.output
    single = tmp_path / "single"
    result = runner.invoke(app, ["evaluate", "breastmnist", "--model", str(tiny_run / "model"), "--out", str(single),
                                 "--data-file", str(npz), "--n-bootstrap", "50", "--tta", "none"])
    assert result.exit_code == 0, result.output
    got, expected = (json.loads((d / "metrics.json").read_text())["metrics"]["auroc"]["value"] for d in (out, single))
    assert got == pytest.approx(expected, abs=1e-6)


def test_bad_file_is_reported(tmp_path):
    bad = tmp_path / "b.npz"
    np.savez(bad, train_images=np.zeros((2, 28, 28), np.uint8))
    result = runner.invoke(app, ["train", "breastmnist", "--out", str(tmp_path / "r"), "--data-file", str(bad), *TINY])
    assert result.exit_code == 2 and "missing array 'val_images'" in result.output


@pytest.fixture(scope="module")
def data_root() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "breastmnist" / "breastmnist.npz").is_file():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    return Path(env)


def test_tiny_train_on_the_real_file(data_root, tmp_path):
    out = tmp_path / "real"
    result = runner.invoke(app, ["train", "breastmnist", "--data-dir", str(data_root), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 156 and "42 malignant" in metrics["split"]


def test_lesion_masks_of_the_real_training_images(data_root, tmp_path):
    """``--lesion-masks``: every real training image finds its BUSI source, and the mask loss is trained."""
    out = tmp_path / "masks"
    tiny = [a for a in TINY if a not in ("--arch-args", '{"unet_multitask": {"decoder": false}}')]
    result = runner.invoke(app, ["train", "breastmnist", "--data-dir", str(data_root), "--out", str(out), *tiny,
                                 "--lesion-masks", "true"])
    assert result.exit_code == 0, result.output
    import yaml

    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["lesion_masks"] is True  # the option itself, as --resume reads it back
    record = written["lesion_mask_matches"]
    assert record["images"] == 546 and record["with_lesion"] == 452 and record["smallest_r"] > 0.999
    with open(out / "archs" / "unet_multitask" / "training_log" / "metrics.csv") as f:
        seg = [r["train_seg_loss"] for r in csv.DictReader(f) if r["train_seg_loss"]]
    assert seg and float(seg[0]) > 0
    # the masks need the decoder
    result = runner.invoke(app, ["train", "breastmnist", "--data-dir", str(data_root), "--out", str(tmp_path / "x"),
                                 *TINY, "--lesion-masks", "true"])
    assert result.exit_code == 2 and "keep its decoder" in result.output
    result = runner.invoke(app, ["train", "breastmnist", "--data-dir", str(data_root), "--out", str(tmp_path / "y"),
                                 *tiny, "--archs", "compact_cnn", "--lesion-masks", "true"])
    assert result.exit_code == 2 and "add unet_multitask to --archs" in result.output


def _shipped() -> Path:
    models = shipped_models()
    if "breastmnist" not in models:
        pytest.fail("no shipped breastmnist model in breastdx/zoo")
    return models["breastmnist"]


def test_predict_with_the_shipped_model(data_root, tmp_path):
    _shipped()
    images = [data_root / "busi" / "malignant" / "malignant (1).png", data_root / "busi" / "benign" / "benign (1).png"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "breastmnist", *map(str, images), str(bad), "--out", str(out)])
    assert result.exit_code == 1 and "broken.png" in result.output
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["source"]).name for r in rows) == sorted(p.name for p in images)  # inputs are sorted
    # P(malignant) recorded when the model was shipped: a change means the model, its preprocessing or the
    # predictor changed (tolerance for BLAS differences).
    p_malignant = {Path(r["source"]).name: float(r["p_malignant"]) for r in rows}
    # the four-seed ensemble trained with mixup (benchmarks/breastmnist_ship_ensemble.py, 2026-12-06), the central
    # square of each image read
    assert p_malignant["benign (1).png"] == pytest.approx(0.010098, abs=2e-3)
    assert p_malignant["malignant (1).png"] == pytest.approx(0.999806, abs=2e-3)
    for r in rows:
        assert r["label"] == ("malignant" if float(r["p_malignant"]) >= float(r["threshold"]) else "normal_or_benign")


def test_the_previous_default_is_kept_as_a_named_model(data_root, tmp_path):
    images = [data_root / "busi" / "malignant" / "malignant (1).png", data_root / "busi" / "benign" / "benign (1).png"]
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "breastmnist", *map(str, images), "--model", "breastmnist-single",
                                 "--dtype", "float32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as f:
        rows = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    # P(malignant) of the one compact CNN that was the default, with MedMNIST's central-square crop
    assert float(rows["benign (1).png"]["p_malignant"]) == pytest.approx(0.034813, abs=2e-3)
    assert float(rows["malignant (1).png"]["p_malignant"]) == pytest.approx(0.999994, abs=2e-3)
    assert float(rows["benign (1).png"]["threshold"]) == pytest.approx(0.460178, abs=1e-6)
    assert json.loads((_shipped() / "meta.json").read_text())["architecture"] == "cls_ensemble"


def test_a_busi_image_reads_as_its_breastmnist_image(data_root, tmp_path):
    """MedMNIST made BreastMNIST from BUSI's central squares: the shipped model gives a full BUSI image the
    probability it gives the image's BreastMNIST version (test image 0 is ``malignant (161)``, 694 x 576)."""
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "breastmnist", str(data_root / "busi" / "malignant" / "malignant (161).png"),
                                 f"{data_root / 'breastmnist' / 'breastmnist.npz'}#test_images[000000]",
                                 "--dtype", "float32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as f:
        p = [float(r["p_malignant"]) for r in csv.DictReader(f)]
    assert len(p) == 2 and p[0] == pytest.approx(p[1], abs=1e-4) and p[0] == pytest.approx(0.15396, abs=2e-3)


def test_explain_marks_the_square_the_model_reads(data_root, tmp_path):
    """A 449 x 598 BUSI image: the Grad-CAM overlay outlines its central square (rows 74-522) in cyan, and the map
    is 0 above and below it."""
    from breastdx.visualize.heatmap import REGION_COLOR

    out = tmp_path / "explain"
    result = runner.invoke(app, ["explain", "breastmnist", str(data_root / "busi" / "malignant" / "malignant (1).png"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    png = next((out / "explanations").glob("*_gradcam_*.png"))
    overlay = np.asarray(Image.open(png).convert("RGB"))
    assert tuple(overlay[74, 200]) == REGION_COLOR and tuple(overlay[300, 0]) == REGION_COLOR  # top and left edges
    assert tuple(overlay[30, 200]) != REGION_COLOR


@pytest.mark.slow
def test_evaluate_the_shipped_model(data_root, tmp_path):
    model_dir = _shipped()
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "breastmnist", "--data-dir", str(data_root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    shipped = json.loads((model_dir / "meta.json").read_text())["metrics"]
    assert metrics["metrics"]["auroc"]["value"] == pytest.approx(shipped["auroc"]["value"], abs=0.005)


def test_two_process_ddp_training_through_the_cli(npz, tmp_path):
    """``--devices 2 --strategy ddp --accelerator cpu``: Lightning starts the second rank by running the command
    again; it must reuse rank 0's run folder (not fail on it) and write nothing; rank 0 writes it all."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    two_archs = ["--archs", "unet_multitask,compact_cnn", "--arch-args",
                 '{"unet_multitask": {"channels": [4, 8, 16], "strides": [2, 2]}, "compact_cnn": {"widths": [4, 8], "stem_stride": 1}}']
    cmd = [sys.executable, "-m", "breastdx.cli", "train", "breastmnist", "--out", str(out), "--data-file", str(npz),
           "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", *TINY, *two_archs]  # the last --archs counts
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "BREASTDX_RUN_DIR")}
    # rank 1 once left after one architecture; the U-Net's decoder, unused without lesion masks, once stopped DDP
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in text and "exists and is not empty" not in text
    for name in ("config.yaml", "versions.json", "split.json", "metrics.json", "report.html",
                 "model/model.safetensors", "model/meta.json", "model/MODEL_CARD.md"):
        assert (out / name).is_file(), name
    models = json.loads((out / "metrics.json").read_text())["models"]
    assert models["unet_multitask"]["training"]["devices"] == models["compact_cnn"]["training"]["devices"] == 2


def test_model_card_says_what_file_was_read():
    from types import SimpleNamespace

    from breastdx.tasks.breastmnist import _file_text

    def data(official, sizes):
        return SimpleNamespace(official=official, **{s: SimpleNamespace(n=n) for s, n in zip(("train", "val", "test"),
                                                                                               sizes)})

    assert _file_text(data(True, (546, 78, 156))).startswith("the official file")
    assert "as a re-saved copy is; its pixels were not compared" in _file_text(data(False, (546, 78, 156)))
    assert "nor of its split sizes" in _file_text(data(False, (40, 10, 10)))
