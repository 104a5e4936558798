"""Outlines of instance masks (nuclei) drawn on an image."""

from __future__ import annotations

import numpy as np

from breastdx.visualize.colors import to_rgb

PREDICTION_COLOUR = (255, 230, 0)
REFERENCE_COLOUR = (0, 200, 0)


def instance_outlines(labels: np.ndarray) -> np.ndarray:
    """Pixels of each instance that touch another label or the background, bool ``(H, W)``."""
    from skimage.segmentation import find_boundaries

    return find_boundaries(np.asarray(labels), connectivity=1, mode="inner")


def instance_overlay(image: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """The image, uint8 ``(H, W)`` or ``(H, W, 3)``, with the outline of every instance of ``labels`` (yellow) and of
    ``reference`` (green, below), as uint8 ``(H, W, 3)``.

    Raises:
        ValueError: If a label mask's shape differs from the image's.
    """
    rgb = np.array(to_rgb(image), copy=True)
    for lab, colour in ((reference, REFERENCE_COLOUR), (labels, PREDICTION_COLOUR)):
        if lab is None:
            continue
        if np.shape(lab) != rgb.shape[:2]:
            raise ValueError(f"Label mask of shape {np.shape(lab)} for an image of shape {rgb.shape[:2]}.")
        rgb[instance_outlines(lab)] = colour
    return rgb


def instance_outlines_rgba(labels: np.ndarray) -> np.ndarray:
    """The outline of every instance as an RGBA layer to lay over the image: :data:`PREDICTION_COLOUR` (yellow),
    opaque on the outlines, transparent elsewhere.

    Shape:
        ``(H, W)`` integer labels (0 background) -> ``(H, W, 4)`` uint8.
    """
    rgba = np.zeros(np.shape(labels) + (4,), dtype=np.uint8)
    rgba[instance_outlines(labels)] = (*PREDICTION_COLOUR, 255)
    return rgba
