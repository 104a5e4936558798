"""Review 31b of the morphometry: option checks and edge cases of the Street et al. features."""

from __future__ import annotations

import numpy as np
import pytest

from breastdx.morphometry.features import MorphometryOptions, nucleus_features


@pytest.mark.parametrize("kwargs", [{"spacing": 0}, {"spacing": -1}, {"spacing": float("nan")}, {"sigma": -1},
                                    {"sigma": float("inf")}, {"min_depth": 0}, {"min_depth": float("nan")}])
def test_morphometry_options_out_of_range_are_named(kwargs):
    """spacing 0 raised OverflowError deep in the resampling, sigma -1 a NumPy padding error, and spacing -1 or
    min_depth 0 gave figures silently (8 outline points; every hull edge a concave portion, 4 on a square)."""
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"MorphometryOptions: {name}"):
        MorphometryOptions(**kwargs)


def test_valid_options_still_measure():
    m = np.zeros((30, 30), bool)
    m[5:20, 5:20] = True
    assert nucleus_features(m, options=MorphometryOptions(sigma=0, spacing=0.5, min_depth=0.5))["concave_points"] == 0
