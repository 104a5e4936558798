"""``predict monuseg``'s writer: the magnification check on drawn nuclei, and on a real tile as it is and halved."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.inference.nuclei_writer import (MIN_NUCLEI_FOR_MAGNIFICATION, SMALLEST_MEDIAN_NUCLEUS_PX,
                                              magnification_note)


def _squares(n: int, side: int) -> np.ndarray:
    """``n`` square nuclei of ``side`` x ``side`` px on a grid, labels 1..n."""
    per_row = 20
    labels = np.zeros(((n // per_row + 1) * (side + 2), per_row * (side + 2)), np.int32)
    for k in range(n):
        r, c = divmod(k, per_row)
        labels[r * (side + 2):r * (side + 2) + side, c * (side + 2):c * (side + 2) + side] = k + 1
    return labels


def test_magnification_note_on_drawn_nuclei():
    assert SMALLEST_MEDIAN_NUCLEUS_PX == 200 and MIN_NUCLEI_FOR_MAGNIFICATION == 30
    assert "median 100 px" in magnification_note(_squares(40, 10))  # 100 px nuclei: as at 20x
    assert magnification_note(_squares(40, 15)) == ""  # 225 px
    assert magnification_note(_squares(29, 10)) == ""  # too few nuclei to tell
    assert magnification_note(np.zeros((50, 50), np.int32)) == ""


def test_a_halved_real_tile_is_flagged_the_tile_as_it_is_not(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "monuseg_breast").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    from breastdx.inference.nuclei import NucleusPredictor
    from breastdx.inference.nuclei_writer import write_nucleus_predictions
    from breastdx.zoo import resolve_model

    tile = Image.open(Path(env) / "monuseg_breast/test/images/TCGA-AC-A2FO-01A-01-TS1.tif").convert("RGB")
    tile.crop((0, 0, 500, 500)).save(tmp_path / "as_is.png")
    tile.resize((500, 500), Image.BICUBIC).save(tmp_path / "halved.png")  # the whole tile as at 20x
    predictor = NucleusPredictor.from_dir(resolve_model(None, "monuseg"), tta="none")
    rows, failures = write_nucleus_predictions(predictor, [tmp_path / "as_is.png", tmp_path / "halved.png"],
                                               tmp_path, microns_per_pixel=0.25, overlays=False)
    assert failures == []
    by_name = {Path(r["source"]).name: r for r in rows}
    assert (by_name["as_is.png"]["in_scope"], by_name["as_is.png"]["scope_note"]) == ("true", "")
    assert by_name["halved.png"]["in_scope"] == "false"
    assert by_name["halved.png"]["scope_note"].startswith("its nuclei are small for 40x")
    written = {Path(r["source"]).name: r for r in csv.DictReader(open(tmp_path / "predictions.csv"))}
    assert written["halved.png"]["in_scope"] == "false"


def test_tile_features_csv_writes_a_formula_like_tile_name_as_text(tmp_path):
    """tile_features.csv's ``tile`` column took the file name as it was, while predictions.csv's ``source`` got the
    apostrophe that keeps a spreadsheet from running it (CSV injection)."""
    from breastdx.inference.nuclei import NucleusPredictor
    from breastdx.inference.nuclei_writer import write_nucleus_predictions
    from breastdx.zoo import resolve_model

    rng = np.random.default_rng(0)
    tile = np.clip(rng.normal((200, 120, 180), 25, size=(128, 128, 3)), 0, 255).astype(np.uint8)  # pink, H&E-like
    Image.fromarray(tile).save(tmp_path / "=HYPERLINK(1).png")
    predictor = NucleusPredictor.from_dir(resolve_model(None, "monuseg"), tta="none")
    rows, failures = write_nucleus_predictions(predictor, [tmp_path / "=HYPERLINK(1).png"], tmp_path / "run",
                                               microns_per_pixel=0.25, overlays=False)
    assert failures == [] and len(rows) == 1
    with open(tmp_path / "run" / "tile_features.csv", newline="") as f:
        assert [r["tile"] for r in csv.DictReader(f)] == ["'=HYPERLINK(1)"] * 2  # in px and in µm
    with open(tmp_path / "run" / "predictions.csv", newline="") as f:
        assert [Path(r["source"]).name for r in csv.DictReader(f)] == ["=HYPERLINK(1).png"]  # its folder comes first
