"""The WDBC task through the command line: run folder, reproducibility, save -> load -> predict, bad inputs."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.data.wdbc import FEATURE_NAMES, load_wdbc
from breastdx.inference.tabular import WDBCPredictor
from breastdx.models.saved import ModelFolderError
from breastdx.models.tabular import TABULAR_MODELS
from breastdx.training.tabular import tune_and_threshold

runner = CliRunner()
QUICK = ["--repeats", "1", "--folds", "3", "--models", "logreg,knn", "--n-bootstrap", "200", "--shap-cases", "20",
         "--n-jobs", "1"]


def _train(out: Path, seed: int = 0):
    return runner.invoke(app, ["train", "wdbc", "--out", str(out), "--seed", str(seed), *QUICK])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wdbc") / "run"
    result = _train(out)
    assert result.exit_code == 0, result.output
    return out


def test_run_folder_contract(run: Path):
    for name in ("config.yaml", "versions.json", "split.json", "oof_predictions.csv", "metrics.json", "report.html", "roc.png",
                 "reliability.png", "confusion.png", "shap_summary.png", "model/model.skops", "model/meta.json",
                 "model/MODEL_CARD.md"):
        assert (run / name).is_file(), name
    assert not (run / "running.json").exists() and not (run / "error.txt").exists()  # a finished run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "wdbc" and metrics["n"] == 569
    for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "auroc", "brier",
                 "ece"):
        m = metrics["metrics"][name]
        assert m["ci95"][0] <= m["value"] <= m["ci95"][1]
    assert metrics["metrics"]["auroc"]["value"] > 0.98
    assert set(metrics["models"]) == {"logreg", "knn"}
    assert metrics["operating_point"]["metrics"]["sensitivity"]["value"] > 0.9
    meta = json.loads((run / "model/meta.json").read_text())
    assert meta["feature_names"] == list(FEATURE_NAMES) and meta["class_names"] == ["benign", "malignant"]
    assert meta["data_checksum"] == load_wdbc().checksum and meta["seed"] == 0
    card = (run / "model/MODEL_CARD.md").read_text()
    assert "Research use only" in card and "Single centre (University of Wisconsin Hospitals, 1990s)" in card
    assert "50 in shap_background.npy" in card and "the training rows the model keeps" not in card  # logreg
    # the figures at the operating point, which predict uses, beside those at 0.5 (they were only in metrics.json)
    op = metrics["operating_point"]
    assert (f"mean {op['threshold_mean']:.3f}; this model's, fitted the same way on all cases, is "
            f"{meta['threshold']:.3f}") in card
    at_op = card.split("At the operating point instead of 0.5")[1]
    for name in ("sensitivity", "specificity", "ppv"):
        m = op["metrics"][name]
        assert f"| {name} | {m['value']:.3f} | {m['ci95'][0]:.3f} – {m['ci95'][1]:.3f} |" in at_op
    assert "| auroc |" not in at_op.split("## Limitations")[0]  # AUROC does not move with the threshold
    assert "Research use only" in (run / "report.html").read_text()
    split = json.loads((run / "split.json").read_text())
    assert len(split["fold_of_case"][0]) == 569


def test_same_seed_same_metrics(run: Path, tmp_path: Path):
    again = tmp_path / "again"
    result = _train(again)
    assert result.exit_code == 0
    assert "WDBC, 1 x 3-fold nested CV" in result.output  # the folds run, not the default 10 x 10
    assert (again / "metrics.json").read_text() == (run / "metrics.json").read_text()


def test_existing_run_folder_is_never_overwritten(run: Path):
    result = _train(run)
    assert result.exit_code == 2
    assert "exists and is not empty" in result.output


def test_save_load_predict_identical_probabilities(run: Path, tmp_path: Path):
    table = load_wdbc()
    meta = json.loads((run / "model/meta.json").read_text())
    spec = TABULAR_MODELS.get(meta["architecture"])(0)
    fresh, _, threshold = tune_and_threshold(spec, table.X, table.y, 3, 0, 0.98)
    predictor = WDBCPredictor.from_dir(run / "model")
    np.testing.assert_array_equal(predictor.predict_proba(table.X), fresh.predict_proba(table.X)[:, 1])
    assert predictor.threshold == threshold

    cases = tmp_path / "cases.csv"
    with open(cases, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *FEATURE_NAMES])
        for i in range(4):
            w.writerow([f"case{i}", *table.X[i]])
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "wdbc", "--model", str(run / "model"), str(cases), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["id"] for r in rows] == ["case0", "case1", "case2", "case3"]
    expected = predictor.predict_proba(table.X[:4])
    np.testing.assert_allclose([float(r["p_malignant"]) for r in rows], expected, atol=1e-6)
    for r, p in zip(rows, expected):
        assert r["label"] == ("malignant" if p >= threshold else "benign")
        assert r["shap_1_feature"] in FEATURE_NAMES and r["top_features"]


def test_shap_values_add_up_to_the_probability(run: Path):
    from breastdx.explain.shap_tabular import TabularExplainer

    predictor = WDBCPredictor.from_dir(run / "model")
    X = load_wdbc().X[:3]
    ex = TabularExplainer(predictor.model, predictor.background, FEATURE_NAMES).explain(X)
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, predictor.predict_proba(X), atol=1e-6)


def test_explain_writes_the_shap_columns_of_predict(run: Path, tmp_path: Path):
    """``explain wdbc`` writes per-case SHAP contributions into explanations.csv: the same columns and values
    as ``predict wdbc``'s predictions.csv, and the notes say where they are."""
    table = load_wdbc()
    cases = tmp_path / "cases.csv"
    with open(cases, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *FEATURE_NAMES])
        for i in (0, 19, 300):
            w.writerow([f"case{i}", *table.X[i]])
    model = ["--model", str(run / "model")]
    pred = runner.invoke(app, ["predict", "wdbc", *model, str(cases), "--out", str(tmp_path / "pred")])
    assert pred.exit_code == 0, pred.output
    result = runner.invoke(app, ["explain", "wdbc", *model, str(cases), "--out", str(tmp_path / "ex"), "--reasons", "4"])
    assert result.exit_code == 0, result.output
    assert "explanations.csv" in result.output and "shap_<k>_value" in result.output
    explained = list(csv.DictReader(open(tmp_path / "ex" / "explanations.csv")))
    predicted = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    shap_cols = [f"shap_{k}_{part}" for k in range(1, 5) for part in ("feature", "value")]
    assert set(shap_cols) | {"id", "p_malignant", "top_features"} <= set(explained[0])
    assert [r["id"] for r in explained] == ["case0", "case19", "case300"]
    for e, p in zip(explained, predicted):  # predict's default is 3 reasons: the first three agree exactly
        for col in ["id", "p_malignant", "label", *shap_cols[:6]]:
            assert e[col] == p[col], col
    # the contributions are SHAP values: largest magnitude first, and together with the rest they explain P
    predictor = WDBCPredictor.from_dir(run / "model")
    for e in explained:
        values = [abs(float(e[f"shap_{k}_value"])) for k in range(1, 5)]
        assert values == sorted(values, reverse=True) and values[0] > 0
        assert e["shap_1_feature"] in FEATURE_NAMES
    np.testing.assert_allclose([float(e["p_malignant"]) for e in explained],
                               predictor.predict_proba(table.X[[0, 19, 300]]), atol=1e-6)
    refused = runner.invoke(app, ["explain", "wdbc", *model, str(cases), "--out", str(tmp_path / "ex0"),
                                  "--reasons", "0"])
    assert refused.exit_code != 0 and "The 'reasons' option of explain wdbc must be an integer >= 1" in refused.output


def test_predict_batch_goes_on_past_a_bad_file(run: Path, tmp_path: Path):
    good = tmp_path / "good.csv"
    good.write_text(",".join(f'"{n}"' for n in FEATURE_NAMES) + "\n" + ",".join(["1"] * 30) + "\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(f'"{n}"' for n in FEATURE_NAMES) + "\n" + ",".join(["x"] + ["1"] * 29) + "\n")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "wdbc", "--model", str(run / "model"), str(bad), str(good),
                                 "--out", str(out)])
    assert result.exit_code == 1
    assert "1 input(s) could not be used" in result.output
    assert "column 'mean radius': expected a number, got 'x'" in result.output
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 1 and rows[0]["source"] == str(good)


def test_evaluate_flags_resubstitution(run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "wdbc", "--model", str(run / "model"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"].startswith("resubstitution")
    assert metrics["n"] == 569 and metrics["metrics"]["auroc"]["value"] > 0.99
    assert metrics["training_overlap"] == {"n_seen": 569, "n": 569,
                                           "checked_against": "all 569 training cases, scikit-learn's copy"}
    # the same cases shuffled, or 40 of them beside 2 new ones, are not 'external' data
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.sample(frac=1.0, random_state=0).to_csv(tmp_path / "shuffled.csv", index=False)
    result = runner.invoke(app, ["evaluate", "wdbc", "--model", str(run / "model"), "--data-file",
                                 str(tmp_path / "shuffled.csv"), "--out", str(tmp_path / "e2")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e2" / "metrics.json").read_text())["split"].startswith("resubstitution")
    part = frame.iloc[:42].copy()
    part.iloc[40:, :30] *= 1.01  # two cases the model has not seen
    part.to_csv(tmp_path / "part.csv", index=False)
    result = runner.invoke(app, ["evaluate", "wdbc", "--model", str(run / "model"), "--data-file",
                                 str(tmp_path / "part.csv"), "--out", str(tmp_path / "e3")])
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "e3" / "metrics.json").read_text())["split"]
    assert split.startswith("external: ") and "but 40 of the 42 cases are cases the model was fit on" in split


def test_model_schema_is_verified(run: Path, tmp_path: Path):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(run / "model", broken)
    meta = json.loads((broken / "meta.json").read_text())
    meta["feature_names"] = meta["feature_names"][::-1]
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="feature names and order"):
        WDBCPredictor.from_dir(broken)
    meta["task"] = "busi-seg"
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="not 'wdbc'"):
        WDBCPredictor.from_dir(broken)


class NotSklearn:
    def predict_proba(self, X):  # pragma: no cover - must never run
        raise RuntimeError


def test_untrusted_types_in_model_file_are_refused(run: Path, tmp_path: Path):
    import shutil

    evil = tmp_path / "model"
    shutil.copytree(run / "model", evil)
    sio.dump(NotSklearn(), evil / "model.skops")
    with pytest.raises(ModelFolderError, match="refuses to load types"):
        WDBCPredictor.from_dir(evil)


def test_unknown_task_and_option_errors(tmp_path: Path):
    result = runner.invoke(app, ["train", "wdcb", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "Did you mean 'wdbc'?" in result.output
    result = runner.invoke(app, ["train", "wdbc", "--out", str(tmp_path / "y"), "--model", "svm"])
    assert result.exit_code == 2 and "Did you mean --models?" in result.output
    result = runner.invoke(app, ["train", "wdbc", "--out", str(tmp_path / "z"), "--models", "svn"])
    assert result.exit_code == 2 and "Did you mean 'svm'?" in result.output


def test_shipped_model_is_listed_and_used_by_default(tmp_path: Path):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "wdbc" in result.output
    cases = tmp_path / "cases.csv"
    table = load_wdbc()
    with open(cases, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "diagnosis", *FEATURE_NAMES])
        for i in (0, 19):  # case 0 malignant, case 19 benign
            w.writerow([f"c{i}", "M" if table.y[i] else "B", *table.X[i]])
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "wdbc", str(cases), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["label"] for r in rows] == ["malignant", "benign"]
    assert float(rows[0]["p_malignant"]) > 0.9 and float(rows[1]["p_malignant"]) < 0.1


def test_predict_goes_on_past_a_row_out_of_range_and_names_it(tmp_path: Path):
    """A row with a value past its physical range (1e308 overflows the scaler) is named by file, line and ID and
    reported at the end; the rows before and after it are predicted (the shipped model)."""
    X = load_wdbc().X
    rows = [["a", *map(str, X[0])], ["b", *map(str, X[1])], ["c", *map(str, X[2])]]
    rows[1][4] = "1e308"  # mean area
    rows[2][1] = "9" * 400  # mean radius, as a 400-digit integer
    cases = tmp_path / "cases.csv"
    cases.write_text("\n".join([",".join(["id", *(f'"{n}"' for n in FEATURE_NAMES)]), *map(",".join, rows)]) + "\n")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "wdbc", str(cases), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "2 input(s) could not be used" in result.output
    text = " ".join(result.output.split())
    assert f"{cases} line 3: column 'mean area': expected a value <= 250100" in text
    assert f"{cases} line 4: column 'mean radius': expected a finite number, got '999" in text
    written = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["id"] for r in written] == ["a"]


def test_case_ids_that_spreadsheets_run_are_written_as_text(tmp_path: Path):
    """A case id such as =HYPERLINK(...) goes into predictions.csv with a leading apostrophe (CSV injection)."""
    X = load_wdbc().X
    ids = ['=HYPERLINK("http://x.example","see")', "+7", "-3", "@cmd", "842302"]
    lines = [",".join(["id", *(f'"{n}"' for n in FEATURE_NAMES)])]
    for i, case_id in enumerate(ids):
        quoted = '"' + case_id.replace('"', '""') + '"'
        lines.append(",".join([quoted, *map(str, X[i])]))
    cases = tmp_path / "cases.csv"
    cases.write_text("\n".join(lines) + "\n")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "wdbc", str(cases), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = [r["id"] for r in csv.DictReader(open(out / "predictions.csv", newline=""))]
    assert written == ["'" + i for i in ids[:4]] + ["842302"]


def test_model_card_of_another_data_file_does_not_call_it_wdbc(tmp_path: Path):
    """A CSV in WDBC's layout with other values is described as the user's file, not as the Wisconsin data; a k-NN
    model's card says that its file keeps the training rows."""
    table = load_wdbc()
    path = tmp_path / "cohort.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "diagnosis", *FEATURE_NAMES])
        for i, (x, y) in enumerate(zip(table.X, table.y)):
            w.writerow([f"c{i}", "M" if y else "B", *(x * 1.01)])
    result = runner.invoke(app, ["train", "wdbc", "--out", str(tmp_path / "run"), "--data-file", str(path), *QUICK[:4],
                                 "--models", "knn", *QUICK[6:]])
    assert result.exit_code == 0, result.output
    card = " ".join((tmp_path / "run/model/MODEL_CARD.md").read_text().split())
    assert "569 fine-needle aspirates (212 malignant), 30 features from the file cohort.csv" in card
    assert "not those data" in card and "University of Wisconsin Hospitals" not in card
    assert "Validated only by cross-validation on its own training file" in card
    assert "the training rows the model keeps in model.skops" in card


@pytest.mark.parametrize("args, said", [
    (["--folds", "1"], "The 'folds' option of wdbc must be an integer >= 2. Got 1 instead."),
    (["--target-sensitivity", "2"], "The 'target-sensitivity' option of wdbc must be a number >= 0 and <= 1."),
    (["--n-bootstrap", "-1"], "The 'n-bootstrap' option of wdbc must be an integer >= 1."),
    (["--models", ""], "The 'models' option of wdbc names no model"),
    (["--seed", "-1"], "Invalid value for '--seed'"),
])
def test_bad_training_options_are_refused_before_any_work(tmp_path: Path, args, said):
    """They failed after the cross-validation as an 'unexpected error ... likely a bug', leaving a failed run."""
    result = runner.invoke(app, ["train", "wdbc", *args, "--out", str(tmp_path / "run")], terminal_width=300)
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
    run = tmp_path / "run"
    assert not run.exists() or not any(run.iterdir())  # nothing written (an empty folder is removed at exit)


def test_predict_and_explain_help_list_reasons_and_image_options_are_refused(tmp_path: Path):
    text = " ".join(runner.invoke(app, ["explain", "wdbc", "--help"], terminal_width=300).output.split())
    assert "Options of explain wdbc" in text and "--reasons" in text
    result = runner.invoke(app, ["predict", "wdbc", str(tmp_path / "x.csv"), "--dtype", "bfloat16"],
                           terminal_width=300)  # taken without a word: a scikit-learn model has no dtype
    assert result.exit_code == 2 and "--dtype, --backend and --frame are for the image tasks" in result.output


def test_the_shipped_card_gives_the_figures_at_its_operating_point():
    """The shipped SVM's card states what predict's threshold gives (more false positives than at 0.5), from the
    same meta.json figures that `breastdx models wdbc` shows."""
    from breastdx.zoo import shipped_models

    folder = shipped_models()["wdbc"]
    meta = json.loads((folder / "meta.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    at_op = card.split("At the operating point instead of 0.5")[1].split("## Limitations")[0]
    assert f"is {meta['threshold']:.3f}, which `predict` uses" in at_op
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        m = meta["operating_point_metrics"][name]
        assert f"| {name} | {m['value']:.3f} | {m['ci95'][0]:.3f} – {m['ci95'][1]:.3f} |" in at_op
    assert meta["operating_point_metrics"]["specificity"]["value"] < meta["metrics"]["specificity"]["value"]
