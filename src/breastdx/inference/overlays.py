"""Mask and overlay images: the predicted lesion as a PNG mask, and its contour drawn on the image.

PNG files are written with fast zlib compression (level 1): overlays are for looking at, and writing them
must not slow a batch prediction down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

PREDICTION_COLOR = (255, 48, 48)
"""RGB colour of a predicted contour (red)."""

REFERENCE_COLOR = (48, 220, 48)
"""RGB colour of a reference (ground-truth) contour (green)."""

PNG_COMPRESS_LEVEL = 1


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 image as RGB.

    Shape:
        ``(H, W)`` or ``(H, W, 3)`` -> ``(H, W, 3)``.

    Raises:
        ValueError: If the array is not uint8 ``(H, W)`` or ``(H, W, 3)``.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"Expected a uint8 image (H, W) or (H, W, 3), got {a.dtype} of shape {a.shape}.")
    return np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a.copy()


def contour(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """The inner boundary of a binary mask, ``thickness`` pixels wide.

    Args:
        mask: bool ``(H, W)``.
        thickness: Width of the line in pixels (at least 1).

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


def overlay_contours(image: np.ndarray, masks: Sequence[np.ndarray], colors: Sequence[tuple[int, int, int]],
                     thickness: int | None = None) -> np.ndarray:
    """Draw the contours of masks on an image.

    Shape:
        ``image`` ``(H, W)`` or ``(H, W, 3)`` uint8, each mask ``(H, W)`` -> ``(H, W, 3)`` uint8.

    Args:
        image: The image.
        masks: Binary masks at the image size, drawn in order (later ones on top).
        colors: One RGB colour per mask.
        thickness: Line width in pixels; default about 0.4% of the larger side (at least 1).

    Raises:
        ValueError: If a mask's shape differs from the image's, or masks and colours differ in number.
    """
    rgb = to_rgb(image)
    if len(masks) != len(colors):
        raise ValueError(f"{len(masks)} masks but {len(colors)} colours.")
    width = thickness if thickness is not None else max(1, round(max(rgb.shape[:2]) / 250))
    for mask, color in zip(masks, colors):
        m = np.asarray(mask, dtype=bool)
        if m.shape != rgb.shape[:2]:
            raise ValueError(f"Mask of shape {m.shape} does not fit the image of shape {rgb.shape[:2]}.")
        rgb[contour(m, width)] = color
    return rgb


def write_mask_png(mask: np.ndarray, path: Path) -> Path:
    """Write a binary mask as an 8-bit grey PNG with values {0, 255} (the BUSI convention).

    Args:
        mask: bool ``(H, W)``.
        path: File to write.
    """
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(
        path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return path


def _gray_palette_image(image: np.ndarray, masks: Sequence[np.ndarray], colors: Sequence[tuple[int, int, int]],
                        thickness: int) -> Image.Image:
    """A palette image: 254 gray levels for the picture, one palette entry per contour colour.

    Encoding one byte per pixel instead of three makes the PNG about twice as fast to write; the gray
    levels lose at most half a level (254 instead of 256).
    """
    levels = 256 - len(colors)
    index = ((image.astype(np.uint16) * (levels - 1) + 127) // 255).astype(np.uint8)
    for k, mask in enumerate(masks):
        index[contour(mask, thickness)] = levels + k
    ramp = np.round(np.arange(levels) * 255.0 / (levels - 1)).astype(np.uint8)
    palette = np.concatenate([np.repeat(ramp[:, None], 3, axis=1), np.asarray(colors, np.uint8)]).ravel()
    out = Image.fromarray(index, mode="P")
    out.putpalette(palette.tolist())
    return out


def write_overlay_png(image: np.ndarray, mask: np.ndarray, path: Path, reference: np.ndarray | None = None) -> Path:
    """Write the image with the predicted contour (red) and, if given, the reference contour (green).

    A gray image is written as a palette PNG (254 gray levels and the contour colours), an RGB image as RGB;
    both open as the same picture in any viewer (``Image.open(path).convert("RGB")``).

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, 3)``.
        mask: Predicted mask, bool ``(H, W)``.
        path: PNG file to write.
        reference: Reference mask, bool ``(H, W)``, or None.

    Raises:
        ValueError: If a mask does not fit the image.
    """
    masks = [mask] if reference is None else [reference, mask]
    colors = [PREDICTION_COLOR] if reference is None else [REFERENCE_COLOR, PREDICTION_COLOR]
    a = np.asarray(image)
    if a.dtype == np.uint8 and a.ndim == 2:
        for m in masks:
            if np.shape(m) != a.shape:
                raise ValueError(f"Mask of shape {np.shape(m)} does not fit the image of shape {a.shape}.")
        width = max(1, round(max(a.shape) / 250))
        picture = _gray_palette_image(a, [np.asarray(m, bool) for m in masks], colors, width)
    else:
        picture = Image.fromarray(overlay_contours(a, masks, colors))
    picture.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return path
