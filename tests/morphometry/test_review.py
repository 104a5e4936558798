"""Review of issue 17's morphometry outputs: CSV safety of ``evaluate monuseg``'s tables, and the features on
shapes with known values."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

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



def test_evaluate_morphometry_writes_no_nucleus_as_empty_cells(tmp_path: Path):
    """A tile with one nucleus has no standard error (NaN): written as an empty cell, as predict's CSVs do, not
    'nan'."""
    from breastdx.evaluation.nuclei_report import evaluate_tiles, write_outputs

    image, labels = _two_nuclei()
    labels[labels == 2] = 0
    predictor = _FixedPredictor(labels)
    evaluation = evaluate_tiles(predictor, [(image, labels)], ["one"], 0.25)
    write_outputs(tmp_path, predictor, evaluation, {"split": "test", "matching": "IoU > 0.5"}, None, "review")
    with open(tmp_path / "morphometry.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["radius_se"] for r in rows] == ["", ""] and float(rows[0]["radius_mean"]) > 0

def _symmetry_all_pairs(points: np.ndarray, centre: np.ndarray) -> float:
    """The symmetry as first written: an n x n table of all point pairs and a table of every step by every edge
    (quadratic memory), kept here as the reference the O(n log n) version must equal."""
    import math

    rel = points - centre
    r = np.hypot(rel[:, 0], rel[:, 1])
    ang = np.arctan2(rel[:, 0], rel[:, 1])
    j = np.abs(np.angle(np.exp(1j * (ang[:, None] - ang[None, :] - np.pi)))).argmin(axis=1)
    i = int(np.argmax(r + r[j]))
    axis = rel[i] - rel[j[i]]
    theta = math.atan2(axis[0], axis[1])
    u = rel[:, 1] * math.cos(theta) + rel[:, 0] * math.sin(theta)
    v = -rel[:, 1] * math.sin(theta) + rel[:, 0] * math.cos(theta)
    u0, v0, u1, v1 = u, v, np.roll(u, -1), np.roll(v, -1)
    xs = np.arange(math.ceil(u.min()), math.floor(u.max()) + 1, dtype=np.float64)
    crosses = (xs[:, None] >= np.minimum(u0, u1)[None, :]) & (xs[:, None] < np.maximum(u0, u1)[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(crosses, v0[None, :] + (xs[:, None] - u0[None, :]) / (u1 - u0)[None, :] * (v1 - v0)[None, :],
                     np.nan)
    ok = crosses.any(axis=1)
    up, down = np.clip(np.nanmax(y[ok], axis=1), 0, None), np.clip(-np.nanmin(y[ok], axis=1), 0, None)
    return float(np.abs(up - down).sum() / (up + down).sum())


def _shapes() -> list[np.ndarray]:
    from skimage.draw import polygon

    yy, xx = np.mgrid[:101, :101]
    shapes = [(yy - 50.3) ** 2 + (xx - 49.6) ** 2 <= r * r for r in (3, 12, 30)]
    shapes.append(((yy - 50) / 14) ** 2 + ((xx - 50) / 41) ** 2 <= 1)
    shapes.append(((yy - 50) ** 2 + (xx - 50) ** 2 <= 900) & (yy <= 50)
                  | ((yy - 50) ** 2 / 100 + (xx - 50) ** 2 / 900 <= 1))
    rng = np.random.default_rng(3)
    for k in range(6):
        t = np.linspace(0, 2 * np.pi, 40 + 10 * k, endpoint=False)
        rad = 25 + rng.uniform(-8, 8, len(t))
        m = np.zeros((101, 101), bool)
        rr, cc = polygon(50 + rad * np.sin(t), 50 + rad * np.cos(t), m.shape)
        m[rr, cc] = True
        shapes.append(m)
    return shapes


def test_symmetry_without_the_all_pairs_table_gives_the_same_values():
    from breastdx.morphometry.features import _symmetry, outline, resample

    for m in _shapes():
        pts = resample(outline(m), 1.0)
        centre = np.array(np.nonzero(m), dtype=np.float64).mean(axis=1)
        assert _symmetry(pts, centre) == pytest.approx(_symmetry_all_pairs(pts, centre), rel=1e-9, abs=1e-12)


def test_symmetry_of_a_large_object_needs_little_memory():
    """A 2000 px wide region (a dark smear segmented as one object; n ≈ 6300 outline points) took over 1 GB for
    the n x n pair table of the symmetry; the memory now grows with n."""
    import math
    import tracemalloc

    from breastdx.morphometry.features import _symmetry

    t = np.linspace(0, 2 * math.pi, 6300, endpoint=False)
    pts = np.column_stack([1000 + 1000 * np.sin(t), 1000 + 700 * np.cos(t)])  # an ellipse, mirrored about its axis
    tracemalloc.start()
    try:
        value = _symmetry(pts, np.array([1000.0, 1000.0]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value < 1e-3
    assert peak < 50 * 2 ** 20  # bytes; the pair table alone was 6300² x 16 B = 635 MB


def test_a_hole_inside_a_nucleus_counts_in_its_area_centroid_and_texture():
    """The outline is the outer contour (holes ignored), so radius, perimeter and compactness describe the filled
    nucleus; but area, centroid and texture took only the mask's pixels: a ring of radii 12-20 px (a vesicular
    nucleus whose pale centre fell under the foreground threshold) had area 820 px against the 1257 px its outline
    encloses (Street: the pixels inside the boundary)."""
    from breastdx.morphometry.features import nucleus_features

    yy, xx = np.mgrid[:61, :61]
    disc = np.hypot(yy - 30, xx - 24) <= 20
    centre = np.hypot(yy - 35, xx - 24) < 12  # off-centre, so that it moves the centroid
    ring = disc & ~centre
    grey = np.where(centre, 200.0, 100.0)  # the pale centre
    f, g = nucleus_features(ring, grey), nucleus_features(disc, grey)
    assert int(ring.sum()) == 820 and f["area"] == g["area"] == int(disc.sum()) == 1257  # pi 20² = 1256.6
    assert f["texture"] == pytest.approx(g["texture"]) and f["texture"] > 40  # 100 and 200: std 45.7
    for k in ("radius", "perimeter", "compactness", "centroid_row", "centroid_col"):
        assert f[k] == pytest.approx(g[k], abs=1e-9)
