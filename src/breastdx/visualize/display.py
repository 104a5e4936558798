"""Sizes and resizing of images and maps for display."""

from __future__ import annotations

import numpy as np
from PIL import Image


def display_size(shape: tuple[int, ...], max_side: int) -> tuple[int, int]:
    """``(H, W)`` scaled down (aspect ratio kept) so that the larger side is at most ``max_side``; never scaled up.

    Args:
        shape: ``(H, W, ...)`` of the image.
        max_side: Largest side, in pixels (>= 1).

    Returns:
        ``(h, w)``, each at least 1.
    """
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_image(image: np.ndarray, size: tuple[int, int], resample: int = Image.BILINEAR) -> np.ndarray:
    """A uint8 image resized with Pillow to ``size`` ``(H, W)``; returned as is when it has that size already.

    Args:
        image: uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``.
        size: ``(H, W)`` wanted.
        resample: Pillow filter (``Image.BILINEAR``, ``Image.NEAREST``, ...).

    Returns:
        uint8 ``(size[0], size[1], ...)``.
    """
    if tuple(image.shape[:2]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), resample))


def resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float map resized bilinearly to ``size`` ``(H, W)`` and clipped to [0, 1].

    Shape:
        ``(h, w)`` -> ``(H, W)`` float32.
    """
    c = np.asarray(cam, dtype=np.float32)
    if tuple(c.shape) != tuple(size):
        c = np.asarray(Image.fromarray(c, mode="F").resize((size[1], size[0]), Image.BILINEAR))
    return np.clip(c, 0.0, 1.0)
