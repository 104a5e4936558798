"""The busi-cls task through the command line, on the real BUSI data (skipped without BREASTDX_DATA)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.zoo import shipped_models

runner = CliRunner()
TINY = ["--epochs", "1", "--max-train-batches", "2", "--image-size", "32", "--max-cases", "24", "--batch-size", "4",
        "--n-bootstrap", "50", "--progress-bar", "false", "--archs", "unet_multitask,resnet18"]
NAMES = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "auroc", "brier", "ece",
         "macro_auroc", "sensitivity_normal", "sensitivity_benign", "sensitivity_malignant", "specificity_benign",
         "auroc_malignant")


@pytest.fixture(scope="module")
def data_root() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    root = Path(env)
    if not (root / "busi").is_dir():
        pytest.skip(f"real data not available: {root / 'busi'} does not exist")
    return root


@pytest.fixture(scope="module")
def split_file(data_root, tmp_path_factory) -> Path:
    """The shipped busi-seg's split (made by ``--split-method absolute``, the rule before 2026-12-06), checked against
    the data once for the module: the tests that start from or crop with the shipped segmenter need its split."""
    import shutil

    from breastdx.data.splits import busi_split

    path = tmp_path_factory.mktemp("split") / "split.json"
    shutil.copyfile(shipped_models()["busi-seg"] / "split.json", path)
    busi_split(data_root, path, reuse_only=True)
    return path


@pytest.fixture(scope="module")
def tiny_run(data_root, split_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("busi_cls") / "run"
    result = runner.invoke(app, ["train", "busi-cls", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(split_file), *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_tiny_train_writes_the_run_folder(tiny_run, split_file):
    for name in ("config.yaml", "versions.json", "split.json", "metrics.json", "report.html", "roc.png",
                 "roc_one_vs_rest.png", "confusion.png", "confusion_operating_point.png", "reliability.png",
                 "reliability_top_label.png", "training_curves.png", "model/model.safetensors", "model/meta.json",
                 "model/MODEL_CARD.md", "model/split.json"):
        assert (tiny_run / name).is_file(), name
    assert not list(tiny_run.rglob("*.ckpt")) and not list(tiny_run.rglob("checkpoints"))
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["task"] == "busi-cls" and "test split" in metrics["split"] and metrics["n"] > 0
    for name in NAMES:
        m = metrics["metrics"][name]
        assert (m["value"] is None or isinstance(m["value"], float)) and len(m["ci95"]) == 2, name
    assert set(metrics["models"]) == {"unet_multitask", "resnet18"} and metrics["model"] in metrics["models"]
    cal = metrics["calibration"]
    assert cal["temperature"] > 0 and {"nll", "brier", "ece"} <= set(cal["before"]) == set(cal["after"])
    loc = metrics["localisation"]["gradcam"]
    assert {"cam_mass_in_mask", "pointing_game", "mask_area_fraction"} <= set(loc) and loc["n_images"] > 0
    assert "gradcampp" in metrics["localisation"]
    meta = json.loads((tiny_run / "model" / "meta.json").read_text())
    assert meta["class_names"] == ["normal", "benign", "malignant"] and meta["positive_class"] == "malignant"
    assert meta["preprocessing"]["image_size"] == 32 and meta["temperature"] > 0 and 0 <= meta["threshold"] <= 1
    assert meta["gradcam"]["layer"] and meta["data_checksum"] and meta["seed"] == 0
    card = " ".join((tiny_run / "model" / "MODEL_CARD.md").read_text().split())
    # a smoke model's card says that it saw 24 images per split, not the split sizes its data line gives
    assert "A smoke run (--max-cases 24): trained on 24 and validated on 24 of these images, not all." in card
    assert "the grouped split of busi-seg (seed 0, ratios [0.7, 0.1, 0.2], method absolute)" in card  # the shipped one
    # the shipped split's test images are single frames of their lesions: intervals over images, as before
    assert not {"metrics_over_lesions", "per_patient", "metrics_over_patients"} & set(metrics)
    assert all("over cases" in c["method"] for c in metrics["comparison"])
    html = (tiny_run / "report.html").read_text()
    assert "mass in lesion" in html and "pointing game" in html.lower() and "gradcam_benign_0.png" in html
    split = json.loads(split_file.read_text())
    mine = json.loads((tiny_run / "split.json").read_text())
    assert [mine[k] for k in ("train", "val", "test")] == [split[k] for k in ("train", "val", "test")]


def test_intervals_over_lesions_where_test_frames_repeat(data_root, tmp_path):
    """A proportional split (the default) puts several frames of some lesions into val and test: train and evaluate
    resample lesions (the frames of one together) for the intervals and the paired test, and write no per-patient
    shares."""
    from collections import Counter

    from breastdx.data.splits import busi_split
    from breastdx.evaluation.tables import ci_text
    from breastdx.pipeline.task import evenly_spaced

    split = busi_split(data_root, tmp_path / "split.json", seed=0)
    lesion = {n: k for k, g in enumerate(split.groups) for n in g}

    def lesions(part: str, n: int) -> Counter:  # of the n evenly spaced images (--max-cases n; 0: all)
        names = split.split(part)
        return Counter(lesion.get(names[i], names[i]) for i in evenly_spaced(len(names), n))

    test, val = lesions("test", 48), lesions("val", 0)
    assert max(test.values()) > 1 and max(val.values()) > 1  # frames of one lesion among the scored images
    out = tmp_path / "run"
    tiny = [a if a != "24" else "48" for a in TINY]  # --max-cases 48
    result = runner.invoke(app, ["train", "busi-cls", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(tmp_path / "split.json"), *tiny, "--localisation", "false",
                                 "--gradcam-examples", "0"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    over = metrics["metrics_over_lesions"]
    assert metrics["n"] == 48 and {over[k]["n_lesions"] for k in ("auroc", "sensitivity", "f1")} == {len(test)}
    assert f"{len(test)} lesions of the 48 test images" in over["note"]
    assert not {"per_patient", "metrics_over_patients"} & set(metrics) and not (out / "per_patient.png").exists()
    (c,) = metrics["comparison"]
    assert c["n_lesions"] == len(test) and c["method"].startswith("paired bootstrap over lesions")
    html = (out / "report.html").read_text()
    assert "95% CI over lesions" in html and "Per patient" not in html
    card = " ".join((out / "model" / "MODEL_CARD.md").read_text().split())  # the best model's: quotes the same
    assert f"resampling lesions instead (the frames of one together; {len(test)} units), AUROC (malignant) " \
           f"{ci_text(over['auroc'])}, the interval to quote" in card

    ev = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "busi-cls", "--model", str(out / "model"), "--data-dir", str(data_root),
                                 "--out", str(ev), "--split", "val", "--n-bootstrap", "50"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((ev / "metrics.json").read_text())
    assert evaluated["metrics_over_lesions"]["auroc"]["n_lesions"] == len(val) and evaluated["n"] == sum(val.values())
    assert "per_patient" not in evaluated and "95% CI over lesions" in (ev / "report.html").read_text()


@pytest.mark.slow
def test_same_seed_same_metrics(tiny_run, data_root, split_file, tmp_path):
    out = tmp_path / "again"
    result = runner.invoke(app, ["train", "busi-cls", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(split_file), *TINY])
    assert result.exit_code == 0, result.output
    a = json.loads((tiny_run / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and a["calibration"] == b["calibration"]


def test_evaluate_a_trained_model(tiny_run, data_root, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "busi-cls", "--model", str(tiny_run / "model"), "--data-dir",
                                 str(data_root), "--out", str(out), "--split", "val", "--n-bootstrap", "50"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"].startswith("val split") and "macro_auroc" in metrics["metrics"]
    # the prediction sets were calibrated on the 24 validation cases the tiny run kept (--max-cases 24) and are
    # scored here on all the validation cases: the guarantee ceil((n + 1) x 0.9) / n holds on the calibration
    # cases only (tests/evaluation/test_conformal.py), so this checks the record, not the coverage
    c = metrics["conformal"]
    assert (c["n_calibration"], c["n"], c["level"]) == (24, metrics["n"], 0.9) and metrics["n"] > 24
    low, high = c["conformal_coverage"]["ci95"]
    assert 0 <= low <= c["conformal_coverage"]["value"] <= high <= 1
    assert (out / "report.html").is_file() and (out / "confusion.png").is_file()


def test_explain_goes_on_past_a_bad_file(tiny_run, data_root, tmp_path):
    from breastdx.tasks import get_task

    busi = data_root / "busi"
    images = [busi / "malignant" / "malignant (1).png", busi / "normal" / "normal (1).png"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    he = tmp_path / "he.png"  # colour: explained, and flagged out of scope
    Image.fromarray(np.stack([np.full((64, 64), v, np.uint8) for v in (200, 80, 160)], axis=-1)).save(he)
    out = tmp_path / "explain"
    out.mkdir()
    result = get_task("busi-cls").explain(tiny_run / "model", [*images, bad, he], out, {"classes": "all"})
    assert [f[0] for f in result.failures] == [str(bad)]
    with open(out / "explanations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 3  # images x methods x classes
    assert {r["in_scope"] for r in rows if r["source"] == str(he)} == {"false"}
    assert all(r["scope_note"].startswith("a colour image") for r in rows if r["source"] == str(he))
    rows = [r for r in rows if r["source"] != str(he)]
    assert not any("colour" in r["scope_note"] for r in rows)  # (the tiny model's feature-space check may flag them)
    for row in rows:
        png = Image.open(out / row["overlay"])
        src = Image.open(row["source"])
        assert png.size[0] == max(src.size[0], 240) and png.size[1] > src.size[1] and png.mode == "RGB"  # + legend
    mal = [r for r in rows if "malignant (1)" in r["source"]]
    # its mask lies beside it: a share of the map inside it, except for a map of zeros (said in empty_map; the
    # share was NaN, where the README promises 0 to 1)
    assert any(r["empty_map"] == "false" for r in mal)
    assert all((r["cam_mass_in_mask"] != "") == (r["empty_map"] == "false") for r in mal)
    assert all(0 <= float(r["cam_mass_in_mask"]) <= 1 for r in mal if r["cam_mass_in_mask"])
    assert all(r["cam_mass_in_mask"] == "" for r in rows if "normal (1)" in r["source"])


def test_bad_options_are_reported(data_root, tmp_path):
    result = runner.invoke(app, ["train", "busi-cls", "--out", str(tmp_path / "a"), "--archs", "resnet19"])
    assert result.exit_code == 2 and "Did you mean 'resnet18'" in result.output
    result = runner.invoke(app, ["train", "busi-cls", "--out", str(tmp_path / "b"), "--archs", "unet"])
    assert result.exit_code == 2 and "segmentation network" in result.output
    result = runner.invoke(app, ["train", "busi-cls", "--out", str(tmp_path / "c"), "--tta", "rot90"])
    assert result.exit_code == 2 and "The 'tta' option of busi-cls must be one of none, hflip. Got 'rot90' instead." \
        in result.output
    result = runner.invoke(app, ["train", "busi-cls", "--out", str(tmp_path / "e"), "--epochs", "0"])
    assert result.exit_code == 2 and "The 'epochs' option of busi-cls must be an integer >= 1. Got 0 instead." \
        in result.output
    result = runner.invoke(app, ["train", "busi-cls", "--out", str(tmp_path / "d"), "--archs", "resnet18",
                                 "--init-busi-seg", "shipped"])
    assert result.exit_code == 2 and "multi-task U-Net only" in result.output
    result = runner.invoke(app, ["train", "busi-cls", "--out", str(tmp_path / "f"), "--freeze-encoder", "true"])
    assert result.exit_code == 2 and "keeps a busi-seg encoder fixed; give the busi-seg model with --init-busi-seg" \
        in result.output


def test_freeze_encoder_keeps_the_busi_seg_encoder_as_loaded(data_root, tmp_path):
    """--freeze-encoder with the whole busi-seg loaded: after training every encoder tensor is busi-seg's, while the
    decoder (trained by the lesion-mask loss) has moved."""
    from safetensors.torch import load_file

    from breastdx.models.networks import build_network

    seg = shipped_models()["busi-seg"]
    out = tmp_path / "frozen"
    result = runner.invoke(app, ["train", "busi-cls", "--archs", "unet_multitask", "--image-size", "32", "--epochs", "2",
                                 "--max-cases", "6", "--init-busi-seg", "shipped", "--busi-seg-encoder-only", "false",
                                 "--freeze-encoder", "true", "--split-file", str(seg / "split.json"),
                                 "--localisation", "false", "--gradcam-examples", "0", "--threads", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "meta.json").read_text())
    network, _ = build_network("unet_multitask", 1, 3, **meta["architecture_args"])
    trained, loaded = load_file(out / "model" / "model.safetensors"), load_file(seg / "model.safetensors")
    encoder = set(network.encoder_parameter_names()) & set(trained)
    decoder = {k for k in trained if k.startswith("unet.") and k not in encoder}
    assert len(encoder) == 40 and decoder
    for k in encoder:
        assert torch.equal(trained[k].float(), loaded[k.removeprefix("unet.")].float()), k
    assert any(not torch.equal(trained[k].float(), loaded[k.removeprefix("unet.")].float()) for k in decoder)


def _shipped() -> Path:
    models = shipped_models()
    if "busi-cls" not in models:
        pytest.fail("no shipped busi-cls model in breastdx/zoo")
    return models["busi-cls"]


def test_predict_with_the_shipped_model(data_root, tmp_path):
    _shipped()
    busi = data_root / "busi"
    images = [busi / "benign" / "benign (1).png", busi / "malignant" / "malignant (1).png",
              busi / "normal" / "normal (1).png"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "busi-cls", *map(str, images), str(bad), "--out", str(out)])
    assert result.exit_code == 1, result.output  # one input failed...
    assert "broken.png" in result.output  # ...and is named
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["source"]).name for r in rows] == [p.name for p in images]  # ...while the others succeeded
    for row, src in zip(rows, images):
        probs = [float(row[f"p_{c}"]) for c in ("normal", "benign", "malignant")]
        assert abs(sum(probs) - 1) < 1e-4 and row["label"] in ("normal", "benign", "malignant")
        overlay = Image.open(out / row["gradcam"])
        w, h = Image.open(src).size  # the overlay and its legend strip below
        assert overlay.size[0] == max(w, 240) and overlay.size[1] > h and overlay.mode == "RGB"


def test_shipped_model_outputs_are_stable(data_root):
    """Golden probabilities of the frozen model on three real images (tolerance for BLAS differences)."""
    from breastdx.data.images import read_image
    from breastdx.inference.classifier import ClassificationPredictor

    model_dir = _shipped()
    golden_file = Path(__file__).with_name("busi_cls_golden.json")
    if not golden_file.is_file():
        pytest.fail("no golden values recorded: run python tests/tasks/record_golden.py after shipping a model")
    golden = json.loads(golden_file.read_text())
    predictor = ClassificationPredictor.from_dir(model_dir, task="busi-cls")
    names = list(golden)
    prob = predictor.predict_proba([read_image(data_root / "busi" / n, mode="gray").array for n in names])
    for name, p in zip(names, prob):
        np.testing.assert_allclose(p, golden[name]["prob"], atol=2e-3, err_msg=name)


def test_lesion_crop_training_crops_and_guards(data_root, split_file, tmp_path):
    """--lesion-crop: the images are the shipped segmenter's lesion crops; predict refuses such a model (it
    draws on whole images), evaluate crops the same way; a split whose validation or test cases the segmenter
    trained on is refused."""
    from breastdx.data.splits import busi_split
    from breastdx.models.init_weights import InitWeightsError
    from breastdx.tasks.busi_cls import BusiClsConfig, read

    data = read(BusiClsConfig(lesion_crop="shipped", crop_margin=0.3), data_root, split_file, tmp_path / "s.json")
    part = data.parts["test"]
    benign = next(i for i in range(len(part)) if part.labels[i] == 1)
    image, mask = part.read(benign)
    whole = read(BusiClsConfig(), data_root, split_file, tmp_path / "w.json").parts["test"].read(benign)[0]
    assert image.shape == mask.shape and image.size < whole.size  # a crop, with its mask cut alike
    assert mask.any() and "lesion_crop" not in data.record  # the options lesion_crop and crop_margin say it
    busi_split(data_root, tmp_path / "seed1.json", seed=1)
    with pytest.raises(InitWeightsError, match="busi-seg"):
        read(BusiClsConfig(lesion_crop="shipped"), data_root, tmp_path / "seed1.json", tmp_path / "o.json")

    out = tmp_path / "run"
    tiny = ["resnet18" if a == "unet_multitask,resnet18" else a for a in TINY]
    result = runner.invoke(app, ["train", "busi-cls", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(split_file), "--lesion-crop", "shipped", *tiny,
                                 "--localisation", "false", "--gradcam-examples", "0"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["training_config"]["lesion_crop"] == "shipped"
    image_file = next((data_root / "busi" / "benign").glob("benign (1).png"))
    result = runner.invoke(app, ["predict", "busi-cls", str(image_file), "--model", str(out / "model"),
                                 "--out", str(tmp_path / "pred")])
    assert result.exit_code != 0 and "lesion crops" in result.output
    result = runner.invoke(app, ["evaluate", "busi-cls", "--data-dir", str(data_root), "--model", str(out / "model"),
                                 "--out", str(tmp_path / "ev"), "--max-cases", "12", "--n-bootstrap", "20",
                                 "--localisation", "false"])
    assert result.exit_code == 0, result.output


def test_lesion_aware_predict_fuses_the_shipped_crop_model(data_root, tmp_path):
    """predict --lesion-aware: P = w * P(whole) + (1 - w) * P(crop at the segmenter's lesion), with the weight and
    threshold of the shipped lesion_crop/meta.json; labels follow that threshold."""
    from breastdx.data.images import read_image
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.lesion_crop import LesionCropper

    folder = shipped_models()["busi-cls"]
    fusion = json.loads((folder / "lesion_crop" / "meta.json").read_text())["fusion"]
    assert 0.0 <= fusion["whole_weight"] <= 1.0 and fusion["whole_model"] == "busi-cls"
    files = [data_root / "busi" / "malignant" / "malignant (5).png", data_root / "busi" / "normal" / "normal (3).png"]
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "busi-cls", *map(str, files), "--lesion-aware", "true", "--gradcam",
                                 "false", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    images = [read_image(p, mode="gray").array for p in files]
    whole = ClassificationPredictor.from_dir(folder).predict_proba(images)
    crop_model = ClassificationPredictor.from_dir(folder / "lesion_crop")
    crop = crop_model.predict_proba(LesionCropper.from_model("shipped", 0.3).crops(images))
    expected = fusion["whole_weight"] * whole + (1 - fusion["whole_weight"]) * crop
    got = np.array([[float(r[f"p_{c}"]) for c in ("normal", "benign", "malignant")] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-4)
    assert not np.allclose(got, whole, atol=1e-3)
    for r in rows:
        assert float(r["threshold"]) == pytest.approx(fusion["threshold"], abs=1e-6)
        assert (r["label"] == "malignant") == (float(r["p_malignant"]) >= fusion["threshold"])
    result = runner.invoke(app, ["predict", "busi-cls", str(files[0]), "--lesion-aware", "true",
                                 "--conformal-level", "0.9", "--out", str(tmp_path / "p2")])
    assert result.exit_code != 0 and "fusion" in result.output


def test_lesion_aware_needs_the_crop_model_beside_the_model(tiny_run, data_root, tmp_path):
    image = data_root / "busi" / "benign" / "benign (1).png"
    result = runner.invoke(app, ["predict", "busi-cls", str(image), "--model", str(tiny_run / "model"),
                                 "--lesion-aware", "true", "--out", str(tmp_path / "p")])
    assert result.exit_code != 0 and "no lesion-crop model" in result.output and "lesion_crop" in result.output


def test_a_resumed_run_reads_its_own_split_without_a_method_warning(data_root, split_file, tmp_path, caplog):
    """On --resume the run folder's split.json exists: it is the run's own, reused as it was made (here the shipped
    split, made by the absolute rule, under today's proportional default), without a 'do not apply' warning."""
    import logging
    import shutil

    from breastdx.tasks.busi_cls import BusiClsConfig, read

    out = tmp_path / "split.json"
    shutil.copyfile(split_file, out)
    with caplog.at_level(logging.WARNING, logger="breastdx"):
        data = read(BusiClsConfig(), data_root, None, out)
    assert data.split.method == "absolute" and data.split.test == json.loads(split_file.read_text())["test"]
    assert "do not apply" not in caplog.text
