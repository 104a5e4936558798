"""Per-nucleus rows and the 30 per-tile cytology columns from an instance mask."""

import math

import numpy as np
import pytest

from breastdx.morphometry.summary import TILE_COLUMNS, in_microns, measure_nuclei, tile_summary


def _tile() -> np.ndarray:
    """Discs of radius 6, 8, 10 and 12 inside a 97 x 103 tile, one cut by its left edge, one speck."""
    labels = np.zeros((97, 103), np.int32)
    yy, xx = np.mgrid[:97, :103]
    for i, (cy, cx, r) in enumerate([(20, 20, 6), (20, 60, 8), (60, 30, 10), (65, 75, 12), (40, 2, 9)], 1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    labels[90, 90] = 6
    return labels


def test_columns_follow_the_cytology_names():
    assert len(TILE_COLUMNS) == 30
    assert TILE_COLUMNS[0] == "radius_mean" and TILE_COLUMNS[-1] == "fractal_dimension_worst"
    assert TILE_COLUMNS[10] == "radius_se" and "concave_points_worst" in TILE_COLUMNS


def test_measure_and_summarise():
    labels = _tile()
    grey = np.full(labels.shape, 128.0)
    nuclei = measure_nuclei(labels, grey)
    assert [n["label"] for n in nuclei] == [1, 2, 3, 4, 5, 6]
    assert [n["touches_edge"] for n in nuclei] == [False, False, False, False, True, False]
    assert [n["in_summary"] for n in nuclei] == [True, True, True, True, False, False]  # edge; 1 px speck
    assert nuclei[2]["centroid_row"] == pytest.approx(60) and nuclei[2]["centroid_col"] == pytest.approx(30)
    assert nuclei[0]["texture"] == 0.0
    s = tile_summary(nuclei)
    assert list(s) == list(TILE_COLUMNS)
    radii = np.array([n["radius"] for n in nuclei[:4]])
    assert radii == pytest.approx([6, 8, 10, 12], rel=0.03)
    assert s["radius_mean"] == pytest.approx(radii.mean())
    assert s["radius_se"] == pytest.approx(radii.std(ddof=1) / 2)
    assert s["radius_worst"] == pytest.approx(radii[1:].mean())  # the mean of the three largest
    assert s["area_worst"] == pytest.approx(math.pi * (64 + 100 + 144) / 3, rel=0.03)
    um = tile_summary(in_microns(nuclei, 0.25))
    assert um["radius_mean"] == pytest.approx(s["radius_mean"] * 0.25)
    assert um["area_mean"] == pytest.approx(s["area_mean"] * 0.0625)
    assert um["symmetry_mean"] == s["symmetry_mean"]



def test_a_region_larger_than_any_nucleus_is_kept_out_of_the_worst_columns():
    """A purple blob of 80 px radius (20,100 px; 1,257 µm² at 40x) is no nucleus: its row stays, out of the summary,
    else it alone would set radius_worst and area_worst."""
    labels = np.zeros((300, 300), np.int32)
    yy, xx = np.mgrid[:300, :300]
    labels[(yy - 150) ** 2 + (xx - 150) ** 2 <= 80 ** 2] = 1
    for i, (cy, cx) in enumerate([(20, 20), (20, 60), (20, 100)], 2):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10 ** 2] = i
    nuclei = measure_nuclei(labels)
    assert nuclei[0]["area"] > 16000 and [n["in_summary"] for n in nuclei] == [False, True, True, True]
    assert tile_summary(nuclei)["radius_worst"] == pytest.approx(10, rel=0.03)
    assert measure_nuclei(labels, max_area=10 ** 6)[0]["in_summary"]  # a caller may set the bound

def test_empty_and_wrong_inputs():
    assert measure_nuclei(np.zeros((5, 7), np.int32)) == []
    s = tile_summary([])
    assert list(s) == list(TILE_COLUMNS) and all(math.isnan(v) for v in s.values())  # every column, none a number
    with pytest.raises(ValueError, match="2-D instance mask"):
        measure_nuclei(np.zeros((2, 3, 4), np.int32))
    with pytest.raises(ValueError, match=r"grey image of shape \(4, 4\)"):
        measure_nuclei(np.zeros((5, 7), np.int32), np.zeros((4, 4)))


def test_csv_files(tmp_path):
    import csv

    from breastdx.morphometry.summary import tile_rows, write_nuclei_csv, write_tile_csv

    nuclei = measure_nuclei(_tile(), np.full((97, 103), 50.0))
    write_nuclei_csv(nuclei, tmp_path / "n.csv", 0.25)
    with open(tmp_path / "n.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and rows[0]["label"] == "1" and rows[4]["touches_edge"] == "1"
    assert float(rows[2]["area_um2"]) == pytest.approx(float(rows[2]["area"]) / 16, rel=1e-5)
    write_nuclei_csv(nuclei, tmp_path / "px.csv")
    assert "radius_um" not in (tmp_path / "px.csv").read_text().splitlines()[0]
    table = tile_rows("t", nuclei, 0.25) + tile_rows("u", nuclei[:1])
    assert [(r["tile"], r["unit"], r["n_in_summary"]) for r in table] == [("t", "px", 4), ("t", "um", 4), ("u", "px", 1)]
    write_tile_csv(table, tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as f:
        back = list(csv.DictReader(f))
    assert list(back[0])[:4] == ["tile", "unit", "n_in_summary", "microns_per_pixel"] and len(back[0]) == 34
    assert float(back[1]["radius_mean"]) == pytest.approx(float(back[0]["radius_mean"]) / 4, rel=1e-4)
    assert back[2]["radius_se"] == ""  # one nucleus: no standard error


def test_the_size_limits_are_areas_in_square_microns_at_the_tile_resolution():
    """The 30 and 16,000 px limits were pixel counts chosen at 0.25 µm/px: at 20x (0.5 µm/px) a 4,000 µm² fold
    (16,000 px there) was summarised as a nucleus. They are now the same µm² at any resolution."""
    from breastdx.morphometry.summary import area_limits

    assert area_limits() == (30.0, 16000.0) and area_limits(0.25) == (30.0, 16000.0)
    assert area_limits(0.5) == pytest.approx((7.5, 4000.0)) and area_limits(0.125) == pytest.approx((120, 64000))
    labels = np.zeros((160, 160), np.int32)
    yy, xx = np.mgrid[:160, :160]
    labels[(yy - 80) ** 2 + (xx - 80) ** 2 <= 45 ** 2] = 1  # 6,361 px: 398 µm² at 0.25, 1,590 µm² at 0.5 µm/px
    labels[(yy - 10) ** 2 + (xx - 10) ** 2 <= 2 ** 2] = 2  # 13 px: debris at 0.25 (0.8 µm²), a small nucleus at 0.5 (3.3)
    summarised = {mpp: [n["in_summary"] for n in measure_nuclei(labels, microns_per_pixel=mpp)]
                  for mpp in (None, 0.25, 0.5)}
    assert summarised == {None: [True, False], 0.25: [True, False], 0.5: [False, True]}
    with pytest.raises(ValueError, match="microns_per_pixel must be a positive number"):
        measure_nuclei(labels, microns_per_pixel=0.0)
