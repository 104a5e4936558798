"""Review 31 of the prediction path: predictions.csv in a semicolon spreadsheet and on a non-UTF-8 locale."""

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from breastdx.inference.csv_safety import FORMULA_PREFIXES, safe_cell
from breastdx.inference.predictor import SegmentationPredictor

from .test_predictor import _model_dir


def _predict(tmp_path: Path, names: list[str], monkeypatch) -> Path:
    from breastdx.inference.writers import write_segmentation_predictions

    d, _ = _model_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(tmp_path / name)
    run = tmp_path / "run"
    run.mkdir()
    _, failures, _ = write_segmentation_predictions(SegmentationPredictor.from_dir(d, backend="torch"), names, run,
                                                    overlays=False, workers=1)
    assert failures == []
    return run / "predictions.csv"


def test_a_semicolon_in_a_file_name_starts_no_formula_cell_in_a_semicolon_spreadsheet(tmp_path, monkeypatch):
    """Spreadsheets in locales whose list separator is ';' split a CSV line at ';' (OWASP: a separator in the input
    starts a new cell). A file name 'x;=1+2.png' written unquoted became the cell '=1+2.png,masks/...', a formula."""
    text = _predict(tmp_path, ["x;=1+2.png", "y; -3.png"], monkeypatch).read_text(encoding="utf-8")
    for line in text.splitlines():
        for cell in line.split(";"):  # whatever the quotes: a cell opens at each ';'
            assert not cell.lstrip(' "').startswith(FORMULA_PREFIXES), (cell, text)
    with open(tmp_path / "run" / "predictions.csv", newline="", encoding="utf-8") as f:
        assert sorted(r["source"] for r in csv.DictReader(f)) == ["x;'=1+2.png", "y;' -3.png"]
    assert safe_cell("a;b") == "a;b" and safe_cell("=a;@b") == "'=a;'@b" and safe_cell(-1.5) == -1.5


def test_predictions_csv_is_utf8_whatever_the_locale_encoding(tmp_path, monkeypatch):
    """predictions.csv was opened in the locale's encoding (cp1252 on Windows): a file name in another script made
    writing it fail after the whole batch had run (and a Latin-1 locale would write a file that is not UTF-8)."""
    import builtins

    from breastdx.inference import writers

    def locale_open(file, mode="r", *args, **kwargs):  # open() on a cp1252 locale
        if "b" not in mode and len(args) < 2:
            kwargs.setdefault("encoding", "cp1252")
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(writers, "open", locale_open, raising=False)
    out = _predict(tmp_path, ["超声.png", "café.png"], monkeypatch)
    with open(out, newline="", encoding="utf-8") as f:
        assert sorted(r["source"] for r in csv.DictReader(f)) == sorted(["超声.png", "café.png"])


def test_the_cached_onnx_graph_is_keyed_by_the_code_that_builds_the_network(tmp_path, monkeypatch):
    """The cache key hashed the weights and the network's description only: after an upgrade of torch, MONAI or
    ONNX Runtime, or a change of breastdx's network code, the graph exported by the old code was still run (and no
    longer checked against PyTorch), so the two backends could disagree in silence."""
    import importlib.metadata

    from breastdx.inference import onnx_graphs

    d, _ = _model_dir(tmp_path)
    meta = json.loads((d / "meta.json").read_text())
    cache = tmp_path / "cache"
    first = onnx_graphs.graph_path(cache, d, meta)
    assert onnx_graphs.graph_path(cache, d, meta) == first  # stable while nothing changes
    real = importlib.metadata.version
    for package in ("torch", "monai", "onnxruntime"):
        with monkeypatch.context() as m:
            m.setattr(importlib.metadata, "version", lambda name, p=package: "0.0.0" if name == p else real(name))
            assert onnx_graphs.graph_path(cache, d, meta) != first, package
    code = tmp_path / "models"
    code.mkdir()
    (code / "networks.py").write_text("x = 1\n")
    monkeypatch.setattr(onnx_graphs, "NETWORK_CODE", code)
    before = onnx_graphs.graph_path(cache, d, meta)
    (code / "networks.py").write_text("x = 2\n")
    assert onnx_graphs.graph_path(cache, d, meta) != before
