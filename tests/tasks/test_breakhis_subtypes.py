"""BreakHis subtypes: a positive class made of a group of classes, the patient split of one-patient subtypes,
patient-grouped k-fold cross-validation, and the breakhis task end to end on the real derived copy."""

import csv
import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.evaluation.classification import (classification_metrics, fit_calibration, operating_labels,
                                                positive_columns, positive_probability)
from breastdx.evaluation.metrics import auroc

runner = CliRunner()
TINY = ["--epochs", "1", "--max-train-batches", "2", "--batch-size", "8", "--n-bootstrap", "50", "--progress-bar",
        "false", "--threads", "1", "--gradcam-examples", "1", "--image-size", "32"]
NAMES = ("benign/adenosis", "benign/fibroadenoma", "malignant/ductal_carcinoma", "malignant/mucinous_carcinoma")
# images per subtype of ../shared/data/breakhis_224 (its PROVENANCE.md)
SUBTYPE_COUNTS = {"A": 16, "F": 90, "PT": 14, "TA": 82, "DC": 401, "LC": 18, "MC": 149, "PC": 69}


def _data() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "breakhis_224").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to ../shared/data")
    return Path(env)


# ------------------------------------------------------------------------------------------- class groups
def test_a_positive_group_is_the_sum_of_its_subtypes():
    assert positive_columns(NAMES, "malignant") == (2, 3)
    assert positive_columns(("benign", "malignant"), "malignant") == (1,)
    with pytest.raises(ValueError, match="nor a group"):
        positive_columns(NAMES, "tumour")
    prob = np.array([[0.5, 0.1, 0.2, 0.2], [0.1, 0.1, 0.3, 0.5], [0.05, 0.6, 0.25, 0.1]])
    np.testing.assert_allclose(positive_probability(prob, (2, 3)), [0.4, 0.8, 0.35])
    # positive when P(malignant) >= t: the most probable malignant subtype; else the most probable benign one
    np.testing.assert_array_equal(operating_labels(prob, (2, 3), 0.38), [2, 3, 1])
    np.testing.assert_array_equal(operating_labels(prob, (2, 3), 0.5), [0, 3, 1])


def test_grouped_metrics_give_the_binary_auroc_and_the_subtype_balanced_accuracy():
    y = np.array([0, 1, 1, 2, 2, 3, 3, 3])
    prob = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.1, 0.7, 0.1],
                     [0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7], [0.2, 0.1, 0.1, 0.6], [0.1, 0.5, 0.2, 0.2]])
    m = classification_metrics(y, prob, NAMES, "malignant", 0.5, n_boot=20)
    assert m["auroc"]["value"] == pytest.approx(float(auroc(y >= 2, prob[:, 2:].sum(1))))
    # recalls at argmax: adenosis 1/1, fibroadenoma 1/2, ductal 1/2, mucinous 2/3
    assert m["subtype_balanced_accuracy"]["value"] == pytest.approx((1 + 0.5 + 0.5 + 2 / 3) / 4)
    assert m["subtype_balanced_accuracy"]["value"] == m["balanced_accuracy"]["value"]
    binary = np.stack([prob[:, :2].sum(1), prob[:, 2:].sum(1)], axis=1)
    plain = classification_metrics((y >= 2).astype(np.int64), binary, ("benign", "malignant"), n_boot=5)
    assert "subtype_balanced_accuracy" not in plain and plain["auroc"]["value"] == m["auroc"]["value"]
    # target 0: Youden's J on the temperature-scaled P(malignant), the sum of the two malignant subtypes. The NLL's
    # minimum found by scipy; there P(malignant) = .104 .209 .766 | .896 .209 .896 .791 .328 (benign | malignant):
    # J is highest, 3/5 + 3/3 - 1, at case 6's .791 (at T = 1 it would be case 7's .4, 4/5 + 2/3 - 1)
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax, softmax

    z = np.log(prob)
    cal = fit_calibration(y, z, NAMES, "malignant", 0.0)
    nll = minimize_scalar(lambda t: -log_softmax(z / t, axis=1)[np.arange(8), y].mean(), bounds=(0.05, 20),
                          method="bounded")
    assert cal["temperature"] == pytest.approx(nll.x, abs=1e-4) == pytest.approx(0.6975, abs=1e-3)
    assert cal["threshold"] == pytest.approx(softmax(z / nll.x, axis=1)[6, 2:].sum(), abs=1e-4)
    assert cal["threshold"] == pytest.approx(0.7915, abs=1e-3) and cal["target_sensitivity"] == 0.0


def test_folds_keep_patients_whole_and_test_each_once():
    from breastdx.data.splits import grouped_stratified_folds, single_group_classes
    from breastdx.pipeline.crossval import fold_splits

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), rng.integers(2, 6, 20))
    labels = (groups % 4).astype(np.int64)
    labels[groups == 19] = 4  # a class of one patient
    assert single_group_classes(labels.tolist(), groups.tolist()) == {"4": 19}
    folds = grouped_stratified_folds([str(v) for v in labels], groups.tolist(), k=4, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(groups.size))
    assert all(len({groups[i] for i in f} & {groups[i] for i in g}) == 0 for a, f in enumerate(folds)
               for g in folds[a + 1:])
    assert folds == grouped_stratified_folds([str(v) for v in labels], groups.tolist(), k=4, seed=1)
    splits, kept = fold_splits(labels, groups.astype(str), 4, 0, 0.15, (2, 3))
    assert kept == ["19"]
    tested = [i for s in splits for i in s["test"]]
    assert sorted(tested) == np.flatnonzero(groups != 19).tolist()
    for s in splits:
        assert set(np.flatnonzero(groups == 19)) <= set(s["train"])
        assert not set(groups[s["val"]]) & set(groups[s["test"]]) and not set(groups[s["train"]]) & set(groups[s["test"]])
        assert 0 < np.isin(labels[s["val"]], (2, 3)).sum() < len(s["val"])
    with pytest.raises(ValueError, match="k-fold"):
        grouped_stratified_folds(["a", "b"], [0, 1], k=3)


# ---------------------------------------------------------------------------------------------- real data
def test_subtype_labels_and_the_split_of_one_patient_subtypes_on_the_real_copy():
    from breastdx.data.breakhis import SUBTYPE_CLASS_NAMES, SUBTYPES, load_breakhis
    from breastdx.data.patch_split import make_patch_split

    source = load_breakhis(_data(), labels="subtype")
    assert source.class_names == SUBTYPE_CLASS_NAMES and len(source) == 839
    counts = np.bincount(source.labels, minlength=8)
    assert dict(zip(SUBTYPES, counts.tolist())) == SUBTYPE_COUNTS
    split = make_patch_split(source, seed=0)
    only = split.summary["train_only"]
    assert only["classes"] == ["benign/adenosis", "benign/phyllodes_tumour", "malignant/lobular_carcinoma"]
    held = set(only["patients"])
    assert len(held) == 3 and not held & (set(split.summary["patients"]["test"]) | set(split.summary["patients"]["val"]))
    assert all(split.summary["counts"][s][c] == 0 for s in ("val", "test") for c in only["classes"])
    with pytest.raises(ValueError, match="labels must be one of"):
        load_breakhis(_data(), labels="stage")


def test_breakhis_subtypes_train_predict_and_evaluate_on_the_real_copy(tmp_path):
    data = _data()
    out = tmp_path / "run"
    result = runner.invoke(app, [str(a) for a in ["train", "breakhis", "--data-dir", data, "--out", out, "--archs",
                                                  "compact_cnn", *TINY]])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"auroc", "subtype_balanced_accuracy", "balanced_accuracy_malignant_vs_rest"} <= set(metrics["metrics"])
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["positive_class"] == "malignant" and len(meta["class_names"]) == 8
    assert "sum over its 4 subtypes" in meta["label_rule"]
    from breastdx.config import load_config
    from breastdx.tasks import get_task

    # config.yaml is the run's config, read back as it was (what --resume does): the reader's own options, such as
    # magnification None for "every magnification", are kept apart and do not shadow the config's 0
    config = load_config(get_task("breakhis").config_cls, out / "config.yaml")
    assert config.magnification == 0 and config.archs == ("compact_cnn",)
    hashes = json.loads((out / "model" / "training_hashes.json").read_text())  # predict flags a training image
    assert hashes["n_images"] == len(json.loads((out / "split.json").read_text())["train"])
    image = next((data / "breakhis_224" / "MC").rglob("*.jpg"))
    result = runner.invoke(app, ["predict", "breakhis", str(image), "--model", str(out / "model"), "--out",
                                 str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert sum(float(row[f"p_{c}"]) for c in meta["class_names"]) == pytest.approx(1.0, abs=1e-4)
    assert row["label"] in meta["class_names"]
    split = json.loads((out / "split.json").read_text())  # prediction sets, calibrated on validation
    assert meta["conformal"]["n_calibration"] == len(split["val"]) and metrics["conformal"]["n"] == metrics["n"]
    assert set(row["prediction_set"].split("|")) <= set(meta["class_names"]) and row["prediction_set_level"] == "0.9"
    ood = meta["ood"]  # the feature-space out-of-distribution record: bank of training features, threshold on val
    assert (ood["n_bank"], ood["n_calibration"], ood["k"]) == (len(split["train"]), len(split["val"]),
                                                               min(50, max(1, len(split["train"]) // 10)))
    assert (out / "model" / ood["bank_file"]).is_file() and float(row["ood_distance"]) >= 0
    assert (row["in_scope"] == "true") == (float(row["ood_distance"]) <= ood["threshold"])
    card = (out / "model" / "MODEL_CARD.md").read_text()
    assert "## Prediction sets (conformal)" in card and f"calibrated on {len(split['val'])} validation cases" in card
    assert "## Out-of-scope inputs" in card and f"Over {ood['threshold']:.4f}" in card
    assert f"- Split by patient (seed 0, method {split['method']}): train:" in card and split["method"] == "proportional"
    result = runner.invoke(app, ["evaluate", "breakhis", "--model", str(out / "model"), "--data-dir", str(data),
                                 "--out", str(tmp_path / "eval"), "--n-bootstrap", "50"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["metrics"]["auroc"]["value"] == pytest.approx(metrics["metrics"]["auroc"]["value"], abs=1e-6)
    assert evaluated["conformal"]["conformal_coverage"] == metrics["conformal"]["conformal_coverage"]
    # evaluate gives the intervals over patients that the training run gives (same value, its own resamples)
    over, trained = evaluated["metrics_over_patients"], metrics["metrics_over_patients"]
    assert over["auroc"]["n_patients"] == trained["auroc"]["n_patients"] == evaluated["per_patient"]["n_patients"]
    assert over["auroc"]["value"] == pytest.approx(trained["auroc"]["value"], abs=1e-6)
    assert f"the {over['auroc']['n_patients']} test patients" in over["note"]
    assert "95% CI over patients" in (tmp_path / "eval" / "report.html").read_text()


def test_patient_grouped_cross_validation_tests_every_patient_once(tmp_path):
    data = _data()
    out = tmp_path / "cv"
    result = runner.invoke(app, [str(a) for a in ["train", "breakhis", "--data-dir", data, "--out", out, "--archs",
                                                  "compact_cnn", "--cv-folds", "3", *TINY]])
    assert result.exit_code == 0, result.output
    folds = json.loads((out / "folds.json").read_text())
    tested = [p for f in folds["folds"] for p in f["test_patients"]]
    assert len(tested) == len(set(tested)) == 44 - 3 and not set(tested) & set(folds["train_only_patients"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "cross_validation" and len(metrics["per_fold"]) == 3
    assert metrics["classes_not_tested"] == ["benign/adenosis", "benign/phyllodes_tumour", "malignant/lobular_carcinoma"]
    with open(out / "oof_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    from breastdx.data.breakhis import load_breakhis

    groups = np.asarray(load_breakhis(data).groups)
    held = np.isin(groups, folds["train_only_patients"])
    assert len(rows) == metrics["n"] == int((~held).sum()) < 839 - 16 - 14 - 18  # 29960 has fibroadenoma too
    assert metrics["metrics"]["auroc"]["n_patients"] == 41
    for f in range(3):
        assert (out / "folds" / f"f{f}" / "model" / "meta.json").is_file()
    # the run's own report: the pooled figures over patients as metrics.json gives them, a link to each fold's report
    from breastdx import RESEARCH_USE_ONLY
    from breastdx.evaluation.tables import ci_text

    page = html.unescape((out / "report.html").read_text())
    assert RESEARCH_USE_ONLY in page and "Intervals over patients (41 patients)" in page
    for key in ("auroc", "subtype_balanced_accuracy"):
        assert f"<td>{key}</td><td>{ci_text(metrics['metrics'][key])}</td>" in page
    assert f"alone hold a class ({', '.join(folds['train_only_patients'])})" in page  # held out of testing
    for f in range(3):
        assert f'<a href="folds/f{f}/report.html">' in page and (out / "folds" / f"f{f}" / "report.html").is_file()
    # the folds trained side by side, each in its own process (the task rebuilt there by name): the same runs and
    # out-of-fold probabilities, each fold's log in its own file
    side = tmp_path / "cv-workers"
    result = runner.invoke(app, [str(a) for a in ["train", "breakhis", "--data-dir", data, "--out", side, "--archs",
                                                  "compact_cnn", "--cv-folds", "3", "--cv-workers", "2", *TINY]])
    assert result.exit_code == 0, result.output
    assert (side / "oof_predictions.csv").read_text() == (out / "oof_predictions.csv").read_text()
    assert all("compact_cnn" in (side / "folds" / f"f{f}" / "fold.log").read_text() for f in range(3))
    result = runner.invoke(app, ["train", "pcam", "--data-dir", str(data), "--out", str(tmp_path / "p"), "--cv-folds",
                                 "3", *TINY])
    assert result.exit_code == 2 and "patient-grouped" in result.output


# P(malignant) = the sum of the malignant subtypes, of the shipped breakhis model on three real test-split images
# (fibroadenoma, ductal carcinoma, mucinous carcinoma: the last is missed), recorded when the model was shipped
SHIPPED_IMAGES = ("F/14134E/SOBderived_B_F_14134E_200X_i000.jpg", "DC/16336/SOBderived_M_DC_16336_200X_i000.jpg",
                  "MC/10147/SOBderived_M_MC_10147_200X_i000.jpg")
SHIPPED_P_MALIGNANT = (0.208779, 0.666014, 0.247996)


def test_the_shipped_breakhis_model_on_real_test_images(tmp_path):
    from breastdx.zoo import shipped_models

    data = _data()
    model = shipped_models()["breakhis"]
    meta = json.loads((model / "meta.json").read_text())
    assert meta["positive_class"] == "malignant" and len(meta["class_names"]) == 8
    assert meta["metrics"]["auroc"]["value"] >= 0.90 and "subtype_balanced_accuracy" in meta["metrics"]
    split = json.loads((model / "split.json").read_text())
    patients = {s: {re.match(r"\d+", p.split("/")[1]).group() for p in split[s]} for s in ("train", "val", "test")}
    assert not patients["test"] & (patients["train"] | patients["val"])
    assert set(SHIPPED_IMAGES) <= set(split["test"])
    result = runner.invoke(app, ["predict", "breakhis", *[str(data / "breakhis_224" / p) for p in SHIPPED_IMAGES],
                                 "--out", str(tmp_path / "pred"), "--gradcam"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        rows = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    got = [float(rows[Path(p).name]["p_malignant"]) for p in SHIPPED_IMAGES]
    np.testing.assert_allclose(got, SHIPPED_P_MALIGNANT, atol=2e-3)  # tolerance for BLAS differences
    for row in rows.values():
        subtypes = sum(float(row[f"p_{c}"]) for c in meta["class_names"] if c.startswith("malignant/"))
        assert float(row["p_malignant"]) == pytest.approx(subtypes, abs=1e-5)
        assert float(row["p_benign"]) + float(row["p_malignant"]) == pytest.approx(1.0, abs=1e-5)
        assert (tmp_path / "pred" / row["gradcam"]).is_file() and "/" not in Path(row["gradcam"]).name.replace(
            "gradcam/", "")
