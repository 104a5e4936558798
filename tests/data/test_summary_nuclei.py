"""The nucleus-tile summary (``breastdx data summary monuseg``): barcodes, golden figures of a drawn tile, and the
real MoNuSeg breast tiles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from breastdx.data.summary_nuclei import tcga_site_and_preparation, tile_figures


def test_tcga_barcodes_give_site_and_preparation():
    assert tcga_site_and_preparation("TCGA-A7-A13E-01Z-00-DX1") == ("A7", "FFPE (diagnostic slide)")
    assert tcga_site_and_preparation("TCGA-AC-A2FO-01A-01-TS1") == ("AC", "frozen (top slide)")
    assert tcga_site_and_preparation("TCGA-AO-A0J2-01A-01-BSA") == ("AO", "frozen (bottom slide)")
    assert tcga_site_and_preparation("TCGA-AO-A0J2-01A-01-XX1") == ("AO", "unknown (XX)")
    assert tcga_site_and_preparation("my_tile") == ("unknown", "unknown")


def test_tile_figures_of_drawn_nuclei():
    """Two square nuclei of 4 and 16 px on a 10 x 10 white tile, the nuclei pure haematoxylin-blue."""
    image = np.full((10, 10, 3), 255, np.uint8)
    labels = np.zeros((10, 10), np.int32)
    labels[0:2, 0:2] = 1
    labels[5:9, 5:9] = 3  # labels need not be consecutive
    image[labels > 0] = (60, 60, 160)
    f = tile_figures(image, labels, microns_per_pixel=0.5)
    assert f["n_nuclei"] == 2
    assert f["area_px"] == [7.0, 10.0, 13.0]  # percentiles 25, 50, 75 of (4, 16)
    assert f["area_um2"] == [1.75, 2.5, 3.25]  # x 0.25 µm² a pixel
    assert f["diameter_um_median"] == pytest.approx(round(2 * np.sqrt(10 / np.pi) * 0.5, 2))
    assert f["nucleus_share"] == 0.2 and f["background_share"] == 0.8
    assert f["h_od"]["nuclei"] > f["h_od"]["tile"] > 0  # white background has no stain
    assert f["h_od"]["tile"] == pytest.approx(0.2 * f["h_od"]["nuclei"], abs=1e-3)


def test_summary_of_the_real_monuseg_tiles(tmp_path):
    env = os.environ.get("BREASTDX_DATA")
    if not env or not (Path(env) / "monuseg_breast").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    from breastdx.data.summary_datasets import summarize_dataset

    result = summarize_dataset("monuseg", env, tmp_path)
    assert result["n_tiles"] == 8
    assert result["parts"]["train"] == {"n_tiles": 6, "n_nuclei": 2189, "preparations": ["FFPE (diagnostic slide)"],
                                        "sites": ["A7", "AR", "E2"]}
    assert result["parts"]["test"]["n_nuclei"] == 521 + 356  # the XML polygon counts of PROVENANCE.md
    assert result["parts"]["test"]["preparations"] == ["frozen (bottom slide)", "frozen (top slide)"]
    by_name = {t["name"]: t for t in result["tiles"]}
    assert by_name["TCGA-A7-A13E-01Z-00-DX1"]["n_nuclei"] == 314
    assert by_name["TCGA-A7-A13F-01Z-00-DX1"]["instances_from"] == "binary mask, split by a watershed"
    # the frozen test tiles' nuclei are larger than the FFPE training tiles' (what the report is for)
    train = np.median([t["area_um2"][1] for t in result["tiles"] if t["part"] == "train"])
    assert all(t["area_um2"][1] > train for t in result["tiles"] if t["part"] == "test")
    assert json.loads((tmp_path / "summary.json").read_text())["n_tiles"] == 8
    assert "frozen (top slide)" in (tmp_path / "report.html").read_text()
    with pytest.raises(ValueError, match="no --split"):
        summarize_dataset("monuseg", env, tmp_path / "x", split="test")
