"""The ten Street et al. features on synthetic shapes with known values: discs, an ellipse, stars."""

import math

import numpy as np
import pytest
from skimage.draw import polygon

from breastdx.morphometry.features import (NUCLEUS_FEATURES, MorphometryOptions, grey_levels, nucleus_features,
                                           outline, to_microns)


def disc(r: float, size: int = 101, cy: float = 50.3, cx: float = 49.6) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def ellipse(a: float, b: float, size: int = 121) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - 60.2) / b) ** 2 + ((xx - 60.4) / a) ** 2 <= 1


def star(k: int, inner: float, outer: float, size: int = 121) -> np.ndarray:
    t = np.arange(2 * k) * math.pi / k
    rad = np.where(np.arange(2 * k) % 2 == 0, outer, inner)
    m = np.zeros((size, size), bool)
    rr, cc = polygon(60 + rad * np.sin(t), 60 + rad * np.cos(t), m.shape)
    m[rr, cc] = True
    return m


@pytest.mark.parametrize("r", [2, 3, 4, 5, 8])
def test_small_discs_are_not_less_compact_than_a_disc(r):
    """The smoothed outline of a small disc runs inside its pixels: with the pixel count for its area, a 30 px
    nucleus scored compactness -0.13, which no closed shape can have."""
    assert 0 <= nucleus_features(disc(r))["compactness"] < 0.05


@pytest.mark.parametrize("r", [10, 20, 30])
def test_disc(r):
    f = nucleus_features(disc(r))
    assert set(NUCLEUS_FEATURES) <= set(f)
    assert f["radius"] == pytest.approx(r, rel=0.01)
    assert f["perimeter"] == pytest.approx(2 * math.pi * r, rel=0.01)
    assert f["area"] == pytest.approx(math.pi * r * r, rel=0.01)
    assert abs(f["compactness"]) < 0.02  # perimeter² / (4π area) - 1 = 0 for a disc
    assert f["concave_points"] == 0
    assert f["concavity"] < 0.05  # pixels
    assert f["symmetry"] < 0.02
    assert f["smoothness"] < 0.1  # pixels
    assert 0 <= f["fractal_dimension"] < 0.02
    assert f["centroid_row"] == pytest.approx(50.3, abs=0.05) and f["centroid_col"] == pytest.approx(49.6, abs=0.05)


def test_ellipse():
    a, b = 40.0, 20.0
    f = nucleus_features(ellipse(a, b))
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan's approximation
    area = math.pi * a * b
    # mean distance from the centre of points equally spaced along the ellipse (by arc length)
    t = np.linspace(0, 2 * math.pi, 200_001)
    x, y = a * np.cos(t), b * np.sin(t)
    ds = np.hypot(np.diff(x), np.diff(y))
    radius = float((np.hypot(x[:-1], y[:-1]) * ds).sum() / ds.sum())
    assert f["perimeter"] == pytest.approx(perimeter, rel=0.01)
    assert f["area"] == pytest.approx(area, rel=0.01)
    assert f["radius"] == pytest.approx(radius, rel=0.01)
    assert f["compactness"] == pytest.approx(perimeter ** 2 / (4 * math.pi * area) - 1, abs=0.02)  # 0.189
    assert f["concave_points"] == 0 and f["concavity"] < 0.1
    assert f["symmetry"] < 0.05  # mirrored about its major axis


@pytest.mark.parametrize("k", [4, 5, 7])
def test_star(k):
    inner, outer = 30.0, 50.0
    f = nucleus_features(star(k, inner, outer))
    assert f["concave_points"] == k  # one concave portion between each pair of arms
    # Straight pocket edges: the mean depth inside the hull chord is half the pocket depth (corners rounded by the
    # 1 px smoothing make it a little less).
    depth = outer * math.cos(math.pi / k) - inner
    assert f["concavity"] == pytest.approx(depth / 2, rel=0.15)
    edge = math.sqrt(inner ** 2 + outer ** 2 - 2 * inner * outer * math.cos(math.pi / k))
    assert f["perimeter"] == pytest.approx(2 * k * edge, rel=0.05)  # sharp tips rounded
    assert f["compactness"] > 0.3
    assert f["symmetry"] < 0.05  # mirrored about the axis through an arm


def test_asymmetric_shape_and_rough_outline():
    # A half-disc glued to a narrower half-disc: not mirrored about its longest chord.
    yy, xx = np.mgrid[:101, :101]
    m = ((yy - 50) ** 2 + (xx - 50) ** 2 <= 900) & (yy <= 50) | ((yy - 50) ** 2 / 100 + (xx - 50) ** 2 / 900 <= 1)
    assert nucleus_features(m)["symmetry"] > max(0.08, 5 * nucleus_features(disc(30))["symmetry"])
    # A jagged outline has a higher smoothness, a larger coastline dimension and pockets.
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * math.pi, 80, endpoint=False)
    rad = 30 + rng.uniform(-6, 6, len(t))
    rough = np.zeros((101, 101), bool)
    rr, cc = polygon(50 + rad * np.sin(t), 50 + rad * np.cos(t), rough.shape)
    rough[rr, cc] = True
    f, g = nucleus_features(rough), nucleus_features(disc(30))
    assert f["smoothness"] > 3 * g["smoothness"]
    assert f["fractal_dimension"] > g["fractal_dimension"] + 0.02
    assert f["concave_points"] >= 5


def test_texture_is_the_std_of_the_grey_levels_inside():
    m = disc(10)
    grey = np.where(np.indices(m.shape).sum(0) % 2 == 0, 100.0, 140.0)  # checkerboard: std 20 everywhere
    assert nucleus_features(m, grey)["texture"] == pytest.approx(20.0, abs=0.2)
    assert math.isnan(nucleus_features(m)["texture"])
    rgb = np.zeros((3, 5, 3), np.uint8)
    rgb[..., 0] = 255
    np.testing.assert_allclose(grey_levels(rgb), np.full((3, 5), 0.299 * 255))


def test_microns_scale_lengths_and_areas_only():
    f = nucleus_features(disc(20))
    u = to_microns(f, 0.25)
    assert u["radius"] == pytest.approx(f["radius"] / 4) and u["perimeter"] == pytest.approx(f["perimeter"] / 4)
    assert u["area"] == pytest.approx(f["area"] / 16)
    for k in ("compactness", "symmetry", "fractal_dimension", "concave_points"):
        assert u[k] == f[k]


def test_raw_outline_is_longer_and_errors():
    raw = nucleus_features(disc(20), options=MorphometryOptions(sigma=0))
    assert raw["perimeter"] == pytest.approx(2 * math.pi * 20 * 1.055, rel=0.01)  # the marching-squares staircase
    with pytest.raises(ValueError, match="no nucleus pixels"):
        nucleus_features(np.zeros((7, 9), bool))
    with pytest.raises(ValueError, match=r"grey image of shape \(3, 3\)"):
        nucleus_features(disc(5, size=21, cy=10, cx=10), np.zeros((3, 3)))
    assert outline(disc(5, size=21, cy=10, cx=10)).shape[1] == 2
