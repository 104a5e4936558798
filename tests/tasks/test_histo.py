"""The histopathology tasks through the command line.

* ``pcam`` on the real JPEG subset (BREASTDX_DATA): a tiny two-model run, evaluate, the ``--valid-to-train``
  split (counts, a held-back block of row indices per class) and a tiny run with it, and the shipped model's
  predict / explain on real patches plus a bad file.
* ``idc`` and ``breakhis`` end to end on small synthetic files written in exactly the published formats (Kaggle
  ``X.npy`` / ``Y.npy``, ``IDC_regular`` patient folders, BreakHis file names), fast; the shipped idc model on real
  test-split patches of ``../shared/data/idc`` (the real BreakHis copy is read in tests/data/test_breakhis.py).
"""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app

runner = CliRunner()
TINY = ["--epochs", "1", "--max-train-batches", "2", "--batch-size", "8", "--n-bootstrap", "50", "--progress-bar",
        "false", "--threads", "1", "--gradcam-examples", "1"]
CONTRACT_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "auroc",
                    "brier", "ece")

# P(tumour) of the shipped pcam model on four real test patches (two normal, then two tumour), recorded when
# the model was shipped; a change means the model, its preprocessing or the predictor changed.
SHIPPED_PATCHES = ("test/0/patch0000000.jpg", "test/0/patch0000002.jpg", "test/1/patch0000001.jpg",
                   "test/1/patch0000003.jpg")
SHIPPED_P_TUMOUR = (0.015489, 0.065066, 0.995453, 0.999972)


def _pcam_root() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    if not (Path(env) / "pcam_subset").is_dir():
        pytest.skip(f"real data not available: {Path(env) / 'pcam_subset'} does not exist")
    return Path(env)


def _invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def _check_run(run: Path, task: str, n_test: int | None, two_models: bool) -> dict:
    names = ["config.yaml", "versions.json", "split.json", "metrics.json", "report.html", "roc.png", "reliability.png",
             "confusion.png", "model/model.safetensors", "model/meta.json", "model/MODEL_CARD.md", "model/split.json"]
    for name in names:
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.ckpt")) and not (run / "archs" / "compact_cnn" / "checkpoints").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert metrics["task"] == task and metrics["n"] == (len(split["test"]) if n_test is None else n_test)
    for name in CONTRACT_METRICS:
        m = metrics["metrics"][name]
        assert set(m) == {"value", "ci95"} and len(m["ci95"]) == 2, name
    meta = json.loads((run / "model" / "meta.json").read_text())
    assert meta["task"] == task and meta["weights_file"] == "model.safetensors"
    assert meta["positive_class"] == meta["class_names"][1]
    if two_models:
        (c,) = metrics["comparison"]
        assert {c["model_a"], c["model_b"]} == {"compact_cnn", "resnet18"}
        assert 0.0 <= c["p_value"] <= 1.0 and c["ci95"][0] <= c["difference"] <= c["ci95"][1]
        assert list((run).glob("auroc_difference_*.png"))
        assert "Paired test of the AUROC difference" in (run / "report.html").read_text()
    return metrics


# ------------------------------------------------------------------------------------------------------ pcam
PCAM_TINY = ["--image-size", "32", "--max-cases", "40", *TINY]


@pytest.fixture(scope="module")
def pcam_run(tmp_path_factory) -> Path:
    """A tiny run of the compact CNN on 40 patches per split of the real subset."""
    root = _pcam_root()
    out = tmp_path_factory.mktemp("pcam") / "run"
    result = _invoke(["train", "pcam", "--data-dir", root, "--out", out, "--archs", "compact_cnn", *PCAM_TINY])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def pcam_pair(tmp_path_factory) -> Path:
    """A tiny run of both approaches (compact CNN and ResNet-18) on the same 40 patches per split."""
    out = tmp_path_factory.mktemp("pcam2") / "run"
    result = _invoke(["train", "pcam", "--data-dir", _pcam_root(), "--out", out, "--archs", "compact_cnn,resnet18",
                      *PCAM_TINY])
    assert result.exit_code == 0, result.output
    return out


def test_pcam_tiny_run_on_the_real_subset(pcam_run):
    metrics = _check_run(pcam_run, "pcam", 40, two_models=False)
    assert "official split" in metrics["split"] and metrics["positive_class"] == "tumour"
    assert metrics["benchmark"]["auroc_target"] == 0.95 and metrics["benchmark"]["accuracy_target"] == 0.88
    split = json.loads((pcam_run / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (4000, 3000, 3000)
    assert split["train"][0].startswith("train/") and split["val"][0].startswith("valid/")
    assert split["data_checksum"] == metrics["data_checksum"]
    assert (pcam_run / "gradcam_examples.png").is_file()
    assert "Veeling" in (pcam_run / "report.html").read_text()
    config = (pcam_run / "config.yaml").read_text()
    assert "data_checksum" in config and "archs:" in config


def test_pcam_evaluate_repeats_the_training_metrics(pcam_run, tmp_path):
    out = tmp_path / "eval"
    result = _invoke(["evaluate", "pcam", "--model", pcam_run / "model", "--data-dir", _pcam_root(), "--out", out,
                      "--n-bootstrap", "50", "--max-cases", "40"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    trained = json.loads((pcam_run / "metrics.json").read_text())
    for name in ("auroc", "accuracy", "brier"):
        assert metrics["metrics"][name]["value"] == pytest.approx(trained["metrics"][name]["value"], abs=1e-6), name
    assert (out / "report.html").is_file() and (out / "split.json").is_file()
    assert "official split" in metrics["split"] and metrics["split"] == trained["split"]  # the reused split says so


@pytest.mark.slow
def test_pcam_two_approaches_side_by_side(pcam_pair):
    metrics = _check_run(pcam_pair, "pcam", 40, two_models=True)
    assert set(metrics["models"]) == {"compact_cnn", "resnet18"}
    assert set(metrics["timing"]["train_seconds"]) == {"compact_cnn", "resnet18"}
    for arch in ("compact_cnn", "resnet18"):
        assert (pcam_pair / "archs" / arch / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_pcam_same_seed_same_metrics(pcam_pair, tmp_path):
    out = tmp_path / "again"
    result = _invoke(["train", "pcam", "--data-dir", _pcam_root(), "--out", out, "--archs", "compact_cnn,resnet18",
                      *PCAM_TINY])
    assert result.exit_code == 0, result.output
    a = json.loads((pcam_pair / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and a["comparison"] == b["comparison"]


@pytest.mark.slow
def test_pcam_macenko_normalisation_travels_with_the_model(tmp_path):
    root = _pcam_root()
    out = tmp_path / "macenko"
    result = _invoke(["train", "pcam", "--data-dir", root, "--out", out, "--archs", "compact_cnn", "--image-size", "32",
                      "--max-cases", "24", "--stain-normalisation", "macenko", *TINY])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["stain_normalisation"]["method"] == "macenko"
    stain = meta["stain_normalisation"]
    assert len(stain["stain_matrix"]) == 3 and len(stain["max_concentrations"]) == 2
    assert not (out / "model" / "stain_target.png").exists()  # the numbers travel, not a dataset patch
    patch = root / "pcam_subset" / SHIPPED_PATCHES[2]
    result = _invoke(["predict", "pcam", patch, "--model", out / "model", "--out", tmp_path / "pred"])
    assert result.exit_code == 0, result.output


def test_unknown_option_and_bad_value_are_refused(tmp_path):
    result = _invoke(["train", "pcam", "--out", tmp_path / "x", "--stain-normalization", "macenko"])
    assert result.exit_code == 2 and "--stain-normalisation" in result.output
    result = _invoke(["train", "pcam", "--out", tmp_path / "y", "--stain-normalisation", "reinhard"])
    assert result.exit_code == 2 and "macenko" in result.output
    result = _invoke(["train", "pcam", "--out", tmp_path / "z", "--archs", "compact_cnm"])
    assert result.exit_code == 2 and "compact_cnn" in result.output
    # PCam trains on its official split: a split seed or ratios were recorded in config.yaml as if they applied
    result = _invoke(["train", "pcam", "--data-dir", _pcam_root(), "--out", tmp_path / "s", "--split-seed", "7",
                      "--split-ratios", "0.5,0.25,0.25", *TINY])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "pcam is trained on its official split: --split-seed and --split-ratios" in said
    result = _invoke(["train", "pcam", "--data-dir", _pcam_root(), "--out", tmp_path / "m", "--split-seed", "7",
                      "--split-ratios", "0.5,0.25,0.25", "--split-method", "absolute", *TINY])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and ("pcam is trained on its official split: --split-seed, --split-ratios and "
                                      "--split-method would not apply") in said


# ------------------------------------------------------------------------------------ pcam --valid-to-train
@pytest.fixture(scope="module")
def pcam_source():
    from breastdx.data.patches import load_patch_dataset

    return load_patch_dataset("pcam", _pcam_root())


def _pcam_row(item: str) -> tuple[str, int]:
    """``"valid/1/patch0032767.jpg"`` -> ``("1", 32767)``: the label folder and the PCam row index."""
    return item.split("/")[1], int(item.rsplit("patch", 1)[1].split(".")[0])


def test_pcam_default_split_is_the_official_one(pcam_source):
    from breastdx.tasks.pcam import official_split
    from breastdx.zoo import shipped_models

    split = official_split(pcam_source)
    assert (split.train, split.val) == (official_split(pcam_source, 0.0).train, official_split(pcam_source, 0.0).val)
    assert all(i.startswith("train/") for i in split.train) and all(i.startswith("valid/") for i in split.val)
    assert all(i.startswith("test/") for i in split.test)
    assert (len(split.train), len(split.val), len(split.test)) == (4000, 3000, 3000)
    assert "valid_to_train" not in split.summary and "official" in split.summary["kind"]
    shipped = json.loads((shipped_models()["pcam"] / "split.json").read_text())
    again = official_split(pcam_source, shipped["summary"].get("valid_to_train", 0.0))  # its recorded choice
    assert (shipped["train"], shipped["val"], shipped["test"]) == (again.train, again.val, again.test)
    assert shipped["test"] == split.test


@pytest.mark.parametrize("fraction", [0.8, 0.5])
def test_pcam_valid_to_train_holds_back_a_block_per_class(pcam_source, fraction):
    from breastdx.tasks.pcam import official_split

    official = official_split(pcam_source)
    split = official_split(pcam_source, fraction)
    moved = int(round(fraction * 1500)) * 2  # 1,500 valid patches per class
    assert (len(split.train), len(split.val), len(split.test)) == (4000 + moved, 3000 - moved, 3000)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 10000  # no id in two parts, none lost
    assert split.test == official.test and set(official.train) <= parts[0]
    assert parts[1] <= set(official.val) and parts[0] - set(official.train) == set(official.val) - parts[1]
    for label, name in (("0", "normal"), ("1", "tumour")):
        rows = sorted(r for c, r in map(_pcam_row, official.val) if c == label)
        kept = sorted(r for c, r in map(_pcam_row, split.val) if c == label)
        assert kept == rows[len(rows) - len(kept):]  # the highest rows of the class: one contiguous block
        assert len(kept) == 1500 - moved // 2 and split.summary["val_rows"][name] == [kept[0], kept[-1]]
        assert split.summary["counts"]["val"][name] == len(kept)
    assert split.summary["valid_to_train"] == fraction
    assert "cannot be verified" in split.summary["note"] and "optimistic" in split.summary["description"]


def test_pcam_valid_to_train_that_leaves_no_validation_patch_is_refused(pcam_source, tmp_path):
    from breastdx.data.errors import DataError
    from breastdx.tasks.pcam import official_split

    with pytest.raises(DataError, match="no validation patch"):
        official_split(pcam_source, 0.9999)
    result = _invoke(["train", "pcam", "--out", tmp_path / "x", "--valid-to-train", "1"])
    assert result.exit_code == 2 and "valid-to-train" in result.output
    result = _invoke(["train", "pcam", "--out", tmp_path / "y", "--valid-to-train", "0.5", "--split-file",
                      tmp_path / "split.json"])
    assert result.exit_code == 2 and "split-file" in result.output


def test_pcam_cross_validation_is_refused_before_the_data_are_read(tmp_path):
    """``train pcam --cv-folds 3`` read the data (9 s, a split_reference.json) before cross_validate refused it:
    PCam has no patient ids."""
    result = _invoke(["train", "pcam", "--out", tmp_path / "cv", "--cv-folds", "3"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "The 'cv-folds' option is not for pcam" in said, said
    assert not (tmp_path / "cv" / "split_reference.json").exists()
    assert "Not for pcam" in " ".join(_invoke(["train", "pcam", "--help"]).output.split())


def test_pcam_tiny_run_with_valid_to_train(tmp_path):
    out = tmp_path / "run"
    result = _invoke(["train", "pcam", "--data-dir", _pcam_root(), "--out", out, "--archs", "compact_cnn",
                      "--valid-to-train", "0.8", *PCAM_TINY])
    assert result.exit_code == 0, result.output
    split = json.loads((out / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (6400, 600, 3000)
    assert split["summary"]["valid_to_train"] == 0.8
    assert json.loads((out / "model" / "split.json").read_text())["train"] == split["train"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "official test" in metrics["split"] and "optimistic" in metrics["split"]
    assert json.loads((out / "model" / "meta.json").read_text())["training_config"]["valid_to_train"] == 0.8
    assert "cannot be verified" in (out / "model" / "MODEL_CARD.md").read_text()
    result = _invoke(["evaluate", "pcam", "--model", out / "model", "--data-dir", _pcam_root(), "--out",
                      tmp_path / "eval", "--n-bootstrap", "50", "--max-cases", "40"])
    assert result.exit_code == 0, result.output  # the model's split file is reused as it is
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["split"] == metrics["split"]
    assert again["metrics"]["auroc"]["value"] == pytest.approx(metrics["metrics"]["auroc"]["value"], abs=1e-6)


# ---------------------------------------------------------------------------------------- the shipped model
def _shipped() -> Path:
    from breastdx.zoo import shipped_models

    models = {json.loads((p / "meta.json").read_text())["task"]: p for p in shipped_models().values()}
    if "pcam" not in models:
        pytest.fail("no shipped pcam model in breastdx/zoo")
    return models["pcam"]


def test_shipped_pcam_model_is_small_and_self_describing():
    model = _shipped()
    size = sum(f.stat().st_size for f in model.iterdir())
    assert size <= 10 * 1024 * 1024
    meta = json.loads((model / "meta.json").read_text())
    assert meta["class_names"] == ["normal", "tumour"] and meta["positive_class"] == "tumour"
    assert {"auroc", "accuracy"} <= set(meta["metrics"]) and "test split" in meta["metrics_split"]
    assert not list(model.glob("*.ckpt")) and not list(model.glob("*.pt*"))
    assert "Research use only" in (model / "MODEL_CARD.md").read_text()


def test_predict_with_the_shipped_model_goes_on_past_a_bad_file(tmp_path):
    root = _pcam_root() / "pcam_subset"
    folder = tmp_path / "patches"
    folder.mkdir()
    for rel in SHIPPED_PATCHES:
        (folder / Path(rel).name.replace("patch", f"{rel.split('/')[1]}_")).write_bytes((root / rel).read_bytes())
    (folder / "broken.jpg").write_text("not an image")
    out = tmp_path / "pred"
    result = _invoke(["predict", "pcam", folder, "--out", out])  # no --model: the shipped one
    assert result.exit_code == 1, result.output  # a failure is reported with a non-zero exit code
    assert "broken.jpg" in result.output
    with open(out / "predictions.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["source"])
    assert len(rows) == 4
    assert {"p_normal", "p_tumour", "label", "threshold"} <= set(rows[0])
    p = [float(r["p_tumour"]) for r in rows]
    for r, v in zip(rows, p):
        assert r["label"] == ("tumour" if v >= float(r["threshold"]) else "normal")
        assert float(r["p_normal"]) + v == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(p, SHIPPED_P_TUMOUR, atol=2e-3)  # tolerance for BLAS differences


def test_explain_with_the_shipped_model_writes_overlays(tmp_path):
    root = _pcam_root() / "pcam_subset"
    patches = [root / rel for rel in SHIPPED_PATCHES[1:3]]
    out = tmp_path / "explain"
    result = _invoke(["explain", "pcam", *patches, "--out", out, "--method=gradcam", "--zoom=2"])  # task options after inputs: --name=value
    assert result.exit_code == 0, result.output
    with open(out / "explanations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["method"] for r in rows} == {"gradcam"}
    assert {r["empty_map"] for r in rows} <= {"true", "false"} and {r["frame"] for r in rows} == {""}
    # every class's map: a map of zeros is said (the overlay alone showed a colour bar over an empty map)
    result = _invoke(["explain", "pcam", *patches, "--out", tmp_path / "all", "--method=gradcam", "--classes=all"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "all" / "explanations.csv", newline="") as f:
        every = list(csv.DictReader(f))
    explained = {(r["source"], r["explained_class"]): r["empty_map"] for r in every}
    assert set(explained.values()) <= {"true", "false"} and len(explained) == 4
    assert all(explained[(r["source"], r["label"])] == "false" for r in every)  # the predicted class has a map
    for r in rows:  # the same label fields as predictions.csv
        assert r["label"] == ("tumour" if float(r["p_tumour"]) >= float(r["threshold"]) else "normal")
        assert r["label_argmax"] == ("tumour" if float(r["p_tumour"]) > 0.5 else "normal")
    for r in rows:
        with Image.open(out / r["overlay"]) as im:  # 96 px zoomed 2x, a legend strip below
            assert im.size[0] == 240 and im.size[1] > 192
            a = np.asarray(im.convert("RGB"))
            assert (a[64, 64:128] == (0, 230, 255)).all() and (a[127, 64:128] == (0, 230, 255)).all()  # centre 32²


# ------------------------------------------------------------------------------------------- IDC (synthetic)
def _patch(rng, label: int, size=(50, 50)) -> np.ndarray:
    """An H&E-like patch: pink background, purple blobs denser for label 1."""
    im = np.empty(size + (3,), np.uint8)
    im[:] = (230, 170, 200)
    im = (im.astype(int) + rng.integers(-20, 20, im.shape)).clip(0, 255).astype(np.uint8)
    for _ in range(4 + 10 * label):
        y, x = rng.integers(0, size[0] - 6), rng.integers(0, size[1] - 6)
        im[y:y + 6, x:x + 6] = (110, 60, 150)
    return im


def test_idc_from_the_kaggle_npy_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "idc"
    folder.mkdir(parents=True)
    y = (np.arange(60) % 2).astype(np.int64)
    np.save(folder / "X.npy", np.stack([_patch(rng, int(v)) for v in y]))
    np.save(folder / "Y.npy", y)
    # transfer learning: start from the weights of another compact CNN (e.g. the shipped pcam model)
    import torch

    from breastdx.inference.predictor import save_weights
    from breastdx.models.networks import build_network

    torch.manual_seed(0)
    weights = save_weights(build_network("compact_cnn", 3, 2)[0], tmp_path / "pretrained.safetensors")
    out = tmp_path / "run"
    result = _invoke(["train", "idc", "--data-dir", tmp_path / "data", "--out", out, "--archs", "compact_cnn",
                      "--init", weights, *TINY])
    assert result.exit_code == 0, result.output
    metrics = _check_run(out, "idc", 12, two_models=False)
    init = json.loads((out / "model" / "meta.json").read_text())["init"]
    assert init["n_matched"] > 0 and init["n_missing"] == 0 and init["source"].endswith("pretrained.safetensors")
    assert "no patient ids" in metrics["split"]
    split = json.loads((out / "split.json").read_text())
    assert split["summary"]["grouped_by"] is None and "warning" in split["summary"]
    assert json.loads((out / "model" / "meta.json").read_text())["preprocessing"]["image_size"] == 48


def test_idc_from_patient_folders_is_split_by_patient(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    root = tmp_path / "data" / "idc" / "IDC_regular_ps50_idx5"
    for p in range(12):
        patient = str(10250 + p)
        for k in range(6):
            label = (p + k) % 2
            d = root / patient / str(label)
            d.mkdir(parents=True, exist_ok=True)
            size = (50, 50) if k else (50, 37)  # an edge patch, padded by the reader
            Image.fromarray(_patch(rng, label, size)).save(d / f"{patient}_idx5_x{50 * k}_y{100 + p}_class{label}.png")
    out = tmp_path / "run"
    result = _invoke(["train", "idc", "--data-dir", tmp_path / "data", "--out", out, "--archs", "compact_cnn",
                      "--split-ratios", "0.5,0.25,0.25", *TINY])
    assert result.exit_code == 0, result.output
    metrics = _check_run(out, "idc", None, two_models=False)
    assert "split by patient" in metrics["split"]
    split = json.loads((out / "split.json").read_text())
    patients = split["summary"]["patients"]
    assert not set(patients["train"]) & set(patients["test"]) and not set(patients["val"]) & set(patients["test"])
    per_patient = metrics["per_patient"]  # each test patient's predicted vs true IDC share
    assert sorted(r["patient"] for r in per_patient["rows"]) == sorted(patients["test"])
    assert sum(r["n"] for r in per_patient["rows"]) == metrics["n"]
    over = metrics["metrics_over_patients"]  # intervals from resampling the test patients
    assert over["auroc"]["n_patients"] == per_patient["n_patients"]
    assert over["auroc"]["value"] == pytest.approx(metrics["metrics"]["auroc"]["value"])
    assert "test patients with all their patches" in over["note"] and "metrics_over_lesions" not in metrics
    assert "per_patient.png" in (out / "report.html").read_text()
    # the split file is reused, and refused when the data no longer match it
    again = tmp_path / "again"
    result = _invoke(["train", "idc", "--data-dir", tmp_path / "data", "--out", again, "--archs", "compact_cnn",
                      "--split-file", out / "split.json", *TINY])
    assert result.exit_code == 0, result.output
    assert json.loads((again / "split.json").read_text())["test"] == split["test"]
    next(root.glob("*/1/*.png")).unlink()
    result = _invoke(["train", "idc", "--data-dir", tmp_path / "data", "--out", tmp_path / "changed",
                      "--split-file", out / "split.json", *TINY])
    assert result.exit_code == 2 and "checksum" in result.output
    # a stopped run resumed on data that changed meanwhile: refused, not trained on a split made anew
    import shutil

    from breastdx.runs import RESUME_ENV, RUN_DIR_ENV

    for name in (RESUME_ENV, RUN_DIR_ENV):  # set by the command: restored when the test ends
        monkeypatch.setenv(name, "")
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    for name in ("config.yaml", "split.json", "versions.json"):
        shutil.copy(out / name, stopped / name)
    (stopped / "error.txt").write_text("Interrupted before the end (Ctrl+C or a signal).\n")
    result = _invoke(["train", "idc", "--resume", stopped])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "stopped/split.json: made from data with checksum" in said, said
    assert json.loads((stopped / "split.json").read_text())["test"] == split["test"]  # kept as it was


# -------------------------------------------------------------------------------------- BreakHis (synthetic)
def test_breakhis_from_files_named_by_the_convention(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "data" / "breakhis"
    subtypes = {"B": ("A", "F", "PT", "TA"), "M": ("DC", "LC", "MC", "PC")}
    for p in range(12):
        cls = "B" if p % 2 == 0 else "M"
        sub = subtypes[cls][p % 4 // 2 + (p // 4) % 2 * 2]
        for k, mag in enumerate((40, 100, 40)):
            d = root / ("benign" if cls == "B" else "malignant") / f"{mag}X"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_patch(rng, int(cls == "M"), (46, 70))).save(
                d / f"SOB_{cls}_{sub}-14-{1000 + p}-{mag}-{k + 1:03d}.png")
    out = tmp_path / "run"
    result = _invoke(["train", "breakhis", "--data-dir", tmp_path / "data", "--out", out, "--archs", "compact_cnn",
                      "--image-size", "32", "--split-ratios", "0.5,0.25,0.25", "--magnification", "40",
                      "--labels", "binary", *TINY])
    assert result.exit_code == 0, result.output
    metrics = _check_run(out, "breakhis", None, two_models=False)
    assert metrics["positive_class"] == "malignant" and "split by patient" in metrics["split"]
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["class_names"] == ["benign", "malignant"]
    card = " ".join((out / "model" / "MODEL_CARD.md").read_text().split())  # what was read, not the release
    assert "Read for this model: 24 images of 12 patients at 40x." in card and "cut to 224 x 224" not in card
    img = next(root.glob("malignant/40X/*.png"))
    result = _invoke(["predict", "breakhis", img, "--model", out / "model", "--out", tmp_path / "pred"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert {"p_benign", "p_malignant"} <= set(row) and row["height"] == "46"
    result = _invoke(["evaluate", "breakhis", "--model", out / "model", "--data-dir", tmp_path / "data",
                      "--out", tmp_path / "eval", "--n-bootstrap", "50"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["metrics"]["auroc"]["value"] == pytest.approx(metrics["metrics"]["auroc"]["value"], abs=1e-6)


def test_a_split_without_both_classes_is_refused_with_the_split_named(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "data" / "idc"
    folder.mkdir(parents=True)
    np.save(folder / "X.npy", np.stack([_patch(rng, 0) for _ in range(10)] + [_patch(rng, 1)]))
    np.save(folder / "Y.npy", np.array([0] * 10 + [1]))
    result = _invoke(["train", "idc", "--data-dir", tmp_path / "data", "--out", tmp_path / "run", *TINY])
    assert result.exit_code == 2
    assert "split.json" in result.output and "tumour" in result.output


# ----------------------------------------------------------------------------------------- shipped IDC model
IDC_PATCHES = ("10254/0/10254_idx5_x1201_y551_class0.png", "10254/0/10254_idx5_x1301_y801_class0.png",
               "10255/1/10255_idx5_x601_y1001_class1.png", "10261/1/10261_idx5_x2001_y1151_class1.png")
"""Test-split patches of the shipped idc model (patients the model never saw)."""
IDC_P_TUMOUR = (0.189185, 0.540819, 0.617647, 0.389904)


def test_shipped_idc_model_predicts_real_test_patches_as_recorded(tmp_path):
    from breastdx.zoo import shipped_models

    env = os.environ.get("BREASTDX_DATA")
    root = Path(env or "") / "idc" / "IDC_regular_ps50_idx5"
    if not env or not root.is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    model = shipped_models()["idc"]
    meta = json.loads((model / "meta.json").read_text())
    assert meta["positive_class"] == "tumour" and "split by patient" in meta["metrics_split"]
    assert meta["metrics"]["balanced_accuracy"]["value"] >= 0.85 and meta["metrics"]["f1"]["value"] >= 0.77
    split = json.loads((model / "split.json").read_text())
    assert set(IDC_PATCHES) <= set(split["test"])
    assert not {p.split("/")[0] for p in split["train"]} & {p.split("/")[0] for p in split["test"]}
    result = _invoke(["predict", "idc", *[root / p for p in IDC_PATCHES], "--out", tmp_path / "pred"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        rows = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    got = [float(rows[Path(p).name]["p_tumour"]) for p in IDC_PATCHES]
    np.testing.assert_allclose(got, IDC_P_TUMOUR, atol=2e-3)  # tolerance for BLAS differences


def test_shipped_idc_model_pads_an_edge_patch_as_the_training_reader_did():
    """IDC's edge patches are stored smaller than 50 x 50; the reader pads them with white on the bottom and right,
    and the model folder says so (preprocessing.pad_to), so a raw edge patch is predicted as it was trained."""
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.zoo import shipped_models

    predictor = ClassificationPredictor.from_dir(shipped_models()["idc"], task="idc", backend="torch")
    assert predictor.meta["preprocessing"]["pad_to"] == [50, 50]
    rng = np.random.default_rng(3)
    edge = _patch(rng, 1, (21, 50))
    padded = np.full((50, 50, 3), 255, np.uint8)
    padded[:21] = edge
    p_edge, p_padded = predictor.predict_proba([edge, padded])
    np.testing.assert_allclose(p_edge, p_padded, atol=1e-6)
    env = os.environ.get("BREASTDX_DATA")
    real = Path(env or "") / "idc" / "IDC_regular_ps50_idx5" / "12826" / "0" / "12826_idx5_x1951_y2951_class0.png"
    if env and real.is_file():  # a real edge patch, 13 x 50: its Grad-CAM map is the padded square's, cropped to
        from breastdx.data.images import read_image  # the patch (it was stretched over it with the padding's part)

        edge = read_image(real, mode="rgb").array
        padded = np.full((50, 50, 3), 255, np.uint8)
        padded[:13] = edge
        _, _, (cam_edge, cam_padded) = predictor.explain([edge, padded], class_idx=0)
        assert cam_edge.shape == (13, 50) and cam_padded.shape == (50, 50) and cam_padded.max() == 1.0
        np.testing.assert_allclose(cam_edge, cam_padded[:13], atol=1e-5)
    stretched = ClassificationPredictor.from_dir(shipped_models()["pcam"], task="pcam", backend="torch")
    assert stretched.pad_to is None  # other models resize any size, as before
