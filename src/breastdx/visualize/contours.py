"""Contours of binary masks, drawn on an image or on a transparent layer."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from breastdx.visualize.colors import CONTOUR_RGBA, to_rgb


def line_width(shape: tuple[int, ...]) -> int:
    """Default contour width for an image of ``shape``: about 0.4% of the larger side, at least 1 pixel."""
    return max(1, round(max(shape[:2]) / 250))


def contour(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """The inner boundary of a binary mask, ``thickness`` pixels wide.

    Args:
        mask: bool ``(H, W)``.
        thickness: Width of the line in pixels (values below 1 count as 1).

    Returns:
        bool ``(H, W)``: mask pixels within ``thickness`` pixels of the outside (or of the image border).
    """
    m = np.asarray(mask, dtype=bool)
    out = np.zeros_like(m)
    if not m.any():
        return out
    rows, cols = np.nonzero(m)  # work on the bounding box (plus a margin): masks are small
    t = max(int(thickness), 1)
    r0, r1 = max(rows.min() - t, 0), min(rows.max() + t + 1, m.shape[0])
    c0, c1 = max(cols.min() - t, 0), min(cols.max() + t + 1, m.shape[1])
    box = m[r0:r1, c0:c1]
    # outside the box is background or outside the image: both count as background (border_value=0)
    inner = ndimage.binary_erosion(box, iterations=t, border_value=0)
    out[r0:r1, c0:c1] = box & ~inner
    return out


def check_masks(shape: tuple[int, ...], masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The masks as bool arrays, each checked to have the image's ``(H, W)``.

    Raises:
        ValueError: If a mask's shape differs from ``shape[:2]``.
    """
    out = [np.asarray(m, dtype=bool) for m in masks]
    for m in out:
        if m.shape != tuple(shape[:2]):
            raise ValueError(f"Mask of shape {m.shape} does not fit the image of shape {tuple(shape[:2])}.")
    return out


def overlay_contours(image: np.ndarray, masks: Sequence[np.ndarray], colors: Sequence[tuple[int, int, int]],
                     thickness: int | None = None) -> np.ndarray:
    """Draw the contours of masks on a copy of an image.

    Shape:
        ``image`` ``(H, W)`` or ``(H, W, 3)`` uint8, each mask ``(H, W)`` -> ``(H, W, 3)`` uint8.

    Args:
        image: The image.
        masks: Binary masks at the image size, drawn in order (later ones on top).
        colors: One RGB colour per mask.
        thickness: Line width in pixels; default :func:`line_width`.

    Raises:
        ValueError: If the image is not uint8 ``(H, W)`` / ``(H, W, 3)``, a mask's shape differs from the
            image's, or masks and colours differ in number.
    """
    rgb = np.array(to_rgb(image), copy=True)
    if len(masks) != len(colors):
        raise ValueError(f"{len(masks)} masks but {len(colors)} colours.")
    width = thickness if thickness is not None else line_width(rgb.shape)
    for m, color in zip(check_masks(rgb.shape, masks), colors):
        rgb[contour(m, width)] = color
    return rgb


def contour_rgba(mask: np.ndarray) -> np.ndarray:
    """The contour of a mask as an RGBA layer: :data:`CONTOUR_RGBA` (red) line, transparent elsewhere.

    Shape:
        ``(H, W)`` bool -> ``(H, W, 4)`` uint8.
    """
    m = np.asarray(mask, dtype=bool)
    rgba = np.zeros(m.shape + (4,), dtype=np.uint8)
    rgba[contour(m, line_width(m.shape))] = CONTOUR_RGBA
    return rgba
