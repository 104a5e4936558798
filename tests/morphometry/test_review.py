"""Review of issue 17's morphometry outputs: CSV safety of ``evaluate monuseg``'s tables, and the features on
shapes with known values."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from breastdx.inference.nuclei import InstancePostprocessing, Windows


class _FixedPredictor:
    """A predictor whose instances are the tile's reference labels (no network)."""

    meta = {"n_parameters": 0}
    postprocessing = InstancePostprocessing()
    windows = Windows()

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, None]:
        return self.labels, None


def _two_nuclei() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((64, 64), np.int32)
    yy, xx = np.mgrid[:64, :64]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 64] = 1
    labels[(yy - 42) ** 2 + (xx - 40) ** 2 <= 81] = 2
    image = np.full((64, 64, 3), 220, np.uint8)
    image[labels > 0] = (90, 50, 140)
    return image, labels


def test_evaluate_tables_write_a_formula_like_tile_name_as_text(tmp_path: Path):
    """per_tile.csv and morphometry.csv of ``evaluate monuseg`` took the tile's file name as it was (a tile named
    ``=HYPERLINK(1).tif`` in a MoNuSeg-layout folder ran as a formula in a spreadsheet), while predict's CSVs get
    the apostrophe that keeps it text."""
    from breastdx.evaluation.nuclei_report import evaluate_tiles, write_outputs

    image, labels = _two_nuclei()
    names = ["=HYPERLINK(1)", "+1", "-2", "@3"]
    predictor = _FixedPredictor(labels)
    evaluation = evaluate_tiles(predictor, [(image, labels)] * 4, names, 0.25)
    write_outputs(tmp_path, predictor, evaluation, {"split": "test", "matching": "IoU > 0.5"}, None, "review")
    with open(tmp_path / "per_tile.csv", newline="") as f:
        assert [r["tile"] for r in csv.DictReader(f)] == ["'=HYPERLINK(1)", "'+1", "'-2", "'@3"]
    with open(tmp_path / "morphometry.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["tile"] for r in rows] == [t for t in ["'=HYPERLINK(1)", "'+1", "'-2", "'@3"] for _ in range(2)]
    assert float(rows[0]["area_mean"]) > 0  # the numbers stay numbers
