"""The WDBC predictor's skops file: a damaged file is a ModelFolderError naming it, through the CLI too."""

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.data.wdbc import FEATURE_NAMES, load_wdbc
from breastdx.inference.tabular import SKOPS_FILE, WDBCPredictor
from breastdx.models.saved import ModelFolderError

ZOO = Path(__file__).resolve().parents[2] / "src" / "breastdx" / "zoo" / "wdbc"


@pytest.fixture()
def damaged(tmp_path, request):
    if not (ZOO / "meta.json").is_file():
        pytest.skip("no shipped wdbc model")
    folder = shutil.copytree(ZOO, tmp_path / "wdbc")
    data = (folder / SKOPS_FILE).read_bytes()
    (folder / SKOPS_FILE).write_bytes(request.param(data))
    return folder


@pytest.mark.parametrize("damaged", [lambda d: b"not a zip file", lambda d: d[: len(d) // 2],
                                     lambda d: d.replace(b"schema.json", b"schemb.json")], indirect=True,
                         ids=["garbage", "truncated", "renamed-entry"])
def test_a_damaged_skops_file_is_named(damaged):
    with pytest.raises(ModelFolderError, match=rf"{damaged / SKOPS_FILE}: (not a readable skops file|the skops file "
                                               rf"cannot be loaded) .* the model folder is damaged"):
        WDBCPredictor.from_dir(damaged)


@pytest.mark.parametrize("damaged", [lambda d: d[: len(d) // 2]], indirect=True)
def test_cli_says_so_without_a_traceback(damaged, tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text(",".join(f'"{n}"' for n in FEATURE_NAMES) + "\n" + ",".join(map(str, load_wdbc().X[0])) + "\n")
    result = CliRunner().invoke(app, ["predict", "wdbc", "--model", str(damaged), str(cases), "--out",
                                      str(tmp_path / "out")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "error:" in text and "the model folder is damaged" in text, text
    assert "unexpected error" not in text
