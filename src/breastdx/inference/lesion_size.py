"""Lesion size as radiologists report it: the longest diameter (maximum Feret diameter) of the lesion.

The diameter is measured on the largest connected lesion component (8-connectivity), exactly as scikit-image's
``regionprops(...).feret_diameter_max``: the largest distance between two points of the contour, at level 0.5, of
the component's convex hull image (padded by 2 pixels). With a pixel spacing the contour points are scaled per
axis before the distances are taken, so an anisotropic spacing is measured right (a diameter in pixels times one
spacing is not). Only the vertices of the contour's convex hull are compared, which gives the same maximum with
far fewer pairs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def max_feret_diameter(mask: np.ndarray, spacing_mm: tuple[float, float] | None = None
                       ) -> tuple[float, float | None]:
    """The longest diameter of the largest lesion component.

    Args:
        mask: Lesion mask, bool ``(H, W)``.
        spacing_mm: Pixel spacing ``(row, column)`` in mm, or None.

    Returns:
        ``(diameter in pixels, diameter in mm or None)``; ``(0.0, 0.0 or None)`` for an empty mask. The
        pixel figure equals ``skimage.measure.regionprops(component)[0].feret_diameter_max``; a disc of radius
        r gives about 2r, a rectangle of h x w pixels about its diagonal ``sqrt(h² + w²)``.
    """
    from scipy.spatial import ConvexHull, QhullError
    from skimage.measure import find_contours
    from skimage.morphology import convex_hull_image

    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return 0.0, None if spacing_mm is None else 0.0
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    box = ndimage.find_objects((labels == largest).astype(np.int32))[0]
    component = labels[box] == largest
    if component.sum() >= 3:
        component = convex_hull_image(component)
    points = np.vstack(find_contours(np.pad(component, 2).astype(np.float64), 0.5, fully_connected="high"))
    try:
        points = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):  # collinear or too few points: compare them all
        pass

    def longest(p: np.ndarray) -> float:
        d = p[:, None, :] - p[None, :, :]
        return float(np.sqrt((d ** 2).sum(-1).max()))

    px = longest(points)
    return px, None if spacing_mm is None else longest(points * np.asarray(spacing_mm, dtype=np.float64))
