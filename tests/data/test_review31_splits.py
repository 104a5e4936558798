"""Review 31: defects found in splits, patch splits and near-duplicate hashing (each test failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest

from breastdx.data.duplicates import perceptual_hash, thumbnail


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int64])
def test_colour_image_of_another_dtype_is_refused_not_cast(dtype) -> None:
    """A float or 16-bit colour image was cast to uint8 (wrapping, or 0-1 floats all to 0) and hashed, although a
    non-uint8 image is documented to raise ValueError (a gray one did)."""
    rgb = (np.random.default_rng(0).random((20, 24, 3)) * (1 if dtype is np.float32 else 60000)).astype(dtype)
    with pytest.raises(ValueError, match="uint8"):
        perceptual_hash(rgb)
    with pytest.raises(ValueError, match="uint8"):
        thumbnail(rgb)
