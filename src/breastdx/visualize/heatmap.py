"""Heat maps (Grad-CAM and the like) coloured with jet: blended into an image, or as a transparent layer."""

from __future__ import annotations

import numpy as np

from breastdx.visualize.colors import REFERENCE_COLOR, check_image, jet_lut, to_rgb
from breastdx.visualize.contours import contour, line_width

OVERLAY_ALPHA = 0.45
"""Largest weight of the map's colour in :func:`heatmap_overlay`."""

_BLEND: dict[float, np.ndarray] = {}


def blend_table(alpha: float) -> np.ndarray:
    """``table[gray, level]``: the colour of a gray value under a map level, blended with weight
    ``alpha * level / 255`` (computed once per ``alpha``; do not modify the returned array).

    Returns:
        uint8 ``(256, 256, 3)``.
    """
    if alpha not in _BLEND:
        gray = np.arange(256, dtype=np.float32)[:, None, None]
        w = (alpha * np.arange(256, dtype=np.float32) / 255.0)[None, :, None]
        _BLEND[alpha] = (gray * (1.0 - w) + jet_lut()[None].astype(np.float32) * w + 0.5).astype(np.uint8)
    return _BLEND[alpha]


def heatmap_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA,
                    contour_mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a map, coloured with the jet colour map, over an image.

    Each pixel becomes ``(1 - w) * image + w * jet(cam)`` with ``w = alpha * cam`` (the map quantised to
    256 levels), so cold regions keep the image visible. Gray images go through :func:`blend_table`
    (one lookup per pixel); RGB images are blended arithmetically.

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, 3)``.
        cam: Map in [0, 1], ``(H, W)``.
        alpha: Largest weight of the colour, in [0, 1].
        contour_mask: A reference lesion mask ``(H, W)`` drawn as a green contour, or None.

    Returns:
        uint8 ``(H, W, 3)``.

    Raises:
        ValueError: If the image is not uint8 ``(H, W)`` / ``(H, W, 3)`` or the map's shape differs from it.
    """
    a = check_image(image)
    c = np.asarray(cam, dtype=np.float32)
    if c.shape != a.shape[:2]:
        raise ValueError(f"Map of shape {c.shape} does not fit the image of shape {a.shape[:2]}.")
    level = np.clip(c * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        table = blend_table(float(alpha))
        out = np.take(table.reshape(256 * 256, 3), (a.astype(np.uint16) << 8) | level, axis=0)
    else:
        w = (alpha * level.astype(np.float32) / 255.0)[..., None]
        out = (to_rgb(a) * (1.0 - w) + jet_lut()[level] * w + 0.5).astype(np.uint8)
    if contour_mask is not None:
        out[contour(np.asarray(contour_mask, dtype=bool), line_width(out.shape))] = REFERENCE_COLOR
    return out


def heatmap_rgba(cam: np.ndarray) -> np.ndarray:
    """A map in [0, 1] as an RGBA layer: jet colours, opacity growing with the map (cold regions transparent).

    Values outside [0, 1] are clipped.

    Shape:
        ``(H, W)`` float -> ``(H, W, 4)`` uint8.
    """
    c = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    idx = (c * 255.0 + 0.5).astype(np.uint8)
    rgba = np.empty(c.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = jet_lut()[idx]
    rgba[..., 3] = idx
    return rgba
