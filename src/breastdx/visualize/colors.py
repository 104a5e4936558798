"""Colour tables and colour-space conversions of uint8 images.

The jet colour map is computed here from its piecewise-linear definition (the table matplotlib's ``jet``
gives at 256 levels), so rendering needs no plotting library.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PREDICTION_COLOR = (255, 48, 48)
"""RGB colour of a predicted contour (red)."""

REFERENCE_COLOR = (48, 220, 48)
"""RGB colour of a reference (ground-truth) contour (green)."""

CONTOUR_RGBA = (*PREDICTION_COLOR, 255)
"""RGBA colour of a predicted contour on a transparent layer."""

# (position, value) knots of each channel of jet, as in matplotlib's ``_jet_data``
_JET_KNOTS = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}

_JET: np.ndarray | None = None


def _channel(knots: tuple[tuple[float, float], ...], n: int) -> np.ndarray:
    """matplotlib's ``_create_lookup_table`` for a continuous channel: linear between knots at ``n`` levels."""
    xs = np.array([k[0] for k in knots]) * (n - 1)
    ys = np.array([k[1] for k in knots])
    x = np.linspace(0, 1, n) * (n - 1)
    ind = np.searchsorted(xs, x)[1:-1]
    distance = (x[1:-1] - xs[ind - 1]) / (xs[ind] - xs[ind - 1])
    inner = distance * (ys[ind] - ys[ind - 1]) + ys[ind - 1]
    return np.clip(np.concatenate([[ys[0]], inner, [ys[-1]]]), 0.0, 1.0)


def jet_lut() -> np.ndarray:
    """The jet colour map at 256 levels (computed once; do not modify the returned array).

    Returns:
        uint8 ``(256, 3)``: RGB of level 0 (dark blue) to 255 (dark red).
    """
    global _JET
    if _JET is None:
        table = np.stack([_channel(_JET_KNOTS[c], 256) for c in ("red", "green", "blue")], axis=1)
        _JET = (table * 255).round().astype(np.uint8)
    return _JET


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as an array, checked to be a uint8 gray or RGB image.

    Shape:
        ``(H, W)`` or ``(H, W, 3)``, uint8.

    Raises:
        ValueError: If the array is not uint8 ``(H, W)`` or ``(H, W, 3)``.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"Expected a uint8 image (H, W) or (H, W, 3), got {a.dtype} of shape {a.shape}.")
    return a


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 image as RGB: a gray image's channel repeated (as ``read_image(mode="rgb")``), an RGB image as is
    (not copied).

    Shape:
        ``(H, W)`` or ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8.

    Raises:
        ValueError: If the array is not uint8 ``(H, W)`` or ``(H, W, 3)``.
    """
    a = check_image(image)
    return np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 image as gray by ITU-R 601-2 luma, exactly as ``read_image(mode="gray")``; a gray image as is.

    Shape:
        ``(H, W, 3)`` or ``(H, W)`` uint8 -> ``(H, W)`` uint8.

    Raises:
        ValueError: If the array is not uint8 ``(H, W)`` or ``(H, W, 3)``.
    """
    a = check_image(image)
    if a.ndim == 2:
        return a
    return np.asarray(Image.fromarray(np.ascontiguousarray(a)).convert("L"), dtype=np.uint8)
