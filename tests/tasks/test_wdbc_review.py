"""The WDBC task's options and model folder, found in review: each test failed before its fix."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastdx.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, said", [
    (["--seed", "abc"], "The 'seed' option must be an integer. Got 'abc' instead."),
    (["--seed", "-3"], "The 'seed' option of evaluate wdbc must be an integer >= 0"),
    (["--sed", "3"], "Unknown option --sed for evaluate wdbc. Did you mean --seed?"),
])
def test_evaluate_options_are_declared_and_checked(tmp_path: Path, args, said):
    """``evaluate wdbc --seed abc`` said only "invalid literal for int() with base 10: 'abc'", naming no option,
    and ``--help`` said that wdbc declares no options for evaluate, though it reads --data-file and --seed."""
    result = runner.invoke(app, ["evaluate", "wdbc", *args, "--out", str(tmp_path / "run")], terminal_width=300)
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
    text = " ".join(runner.invoke(app, ["evaluate", "wdbc", "--help"], terminal_width=300).output.split())
    assert "Options of evaluate wdbc" in text and "--data-file" in text and "Seed of the bootstrap" in text


@pytest.mark.parametrize("damage, said", [
    (lambda p: p.unlink(), r"shap_background.npy: missing; the model folder is incomplete"),
    (lambda p: p.write_bytes(b"not an array"), r"shap_background.npy: not a readable NumPy array"),
    (lambda p: np.save(p, np.zeros((4, 29))), r"expected the features of one or more cases, finite numbers of "
                                              r"shape \(m, 30\), got float64 of shape \(4, 29\)"),
    (lambda p: np.save(p, np.full((4, 30), np.nan)), r"got float64 of shape \(4, 30\)"),
])
def test_a_missing_or_damaged_shap_background_is_named(tmp_path: Path, damage, said):
    """A model folder copied without ``shap_background.npy`` failed with a bare "[Errno 2] No such file or
    directory"; a background of 29 columns or of NaN was loaded, to fail or explain nothing at the first case."""
    from breastdx.inference.tabular import BACKGROUND_FILE, WDBCPredictor
    from breastdx.models.saved import ModelFolderError
    from breastdx.zoo import shipped_models

    folder = tmp_path / "model"
    shutil.copytree(shipped_models()["wdbc"], folder)
    damage(folder / BACKGROUND_FILE)
    with pytest.raises(ModelFolderError, match=said):
        WDBCPredictor.from_dir(folder)
    result = runner.invoke(app, ["predict", "wdbc", str(tmp_path / "cases.csv"), "--model", str(folder), "--out",
                                 str(tmp_path / "run")], terminal_width=300)
    assert result.exit_code != 0 and "shap_background.npy" in result.output and "Traceback" not in result.output


def test_a_numpy_function_in_the_skops_file_is_refused(tmp_path: Path):
    """Every name under sklearn., numpy. or scipy. was trusted, so a model file whose pipeline calls numpy.savetxt
    (or any other function there) on each case loaded; only the types breastdx's own pipelines hold are trusted."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from breastdx.inference.tabular import load_skops
    from breastdx.models.saved import ModelFolderError
    from breastdx.zoo import shipped_models

    shipped = load_skops(shipped_models()["wdbc"] / "model.skops")  # the shipped SVM: Platt-scaled, still loads
    path = tmp_path / "model.skops"
    sio.dump(Pipeline([("f", FunctionTransformer(func=np.savetxt)), ("clf", shipped)]), path)
    with pytest.raises(ModelFolderError, match=r"model.skops: refuses to load types .*: numpy.savetxt"):
        load_skops(path)
