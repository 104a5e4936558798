"""Pixel layouts at the edges of what :mod:`breastdx.data.images` reads through Pillow: transparency given as a
colour key (PNG tRNS), and layouts Pillow cannot read, named as such."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from breastdx.data.images import ImageReadError, read_image_bytes


def _png(array: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", **params)
    return buf.getvalue()


def test_a_transparent_gray_value_is_composited_as_alpha_is():
    # PNG tRNS of a gray image: every pixel of value 100 is transparent, so black on gray (ultrasound's background)
    data = _png(np.array([[0, 100, 200]], dtype=np.uint8), transparency=100)
    rec = read_image_bytes(data, "key.png")
    assert rec.source_mode == "L" and rec.array.tolist() == [[0, 0, 200]]


def test_a_transparent_rgb_colour_is_composited_as_alpha_is():
    # PNG tRNS of an RGB image: (10, 20, 30) is transparent, so white in colour (H&E's glass)
    a = np.array([[[200, 100, 50], [10, 20, 30]]], dtype=np.uint8)
    rec = read_image_bytes(_png(a, transparency=(10, 20, 30)), "key.png", mode="rgb")
    assert rec.array.tolist() == [[[200, 100, 50], [255, 255, 255]]]


def test_a_layout_pillow_cannot_read_is_named_as_such():
    tifffile = pytest.importorskip("tifffile")
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((4, 5, 3), dtype=np.float32))  # float RGB: no Pillow mode holds it
    with pytest.raises(ImageReadError) as err:
        read_image_bytes(buf.getvalue(), "float_rgb.tif")
    said = str(err.value)
    assert said.startswith("float_rgb.tif: cannot read the TIFF header")
    assert "layout Pillow does not read" in said and "expected 1-bit, 8-bit gray or colour" in said
