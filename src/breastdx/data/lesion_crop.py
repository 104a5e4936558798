"""The lesion region of an ultrasound image, as a segmenter found it: a square box with a margin, and its crop.

Lesion-aware classification (issue 13) classifies the lesion found by the segmenter, with some of the tissue around
it (margins, posterior shadowing and enhancement are diagnostic in BI-RADS ultrasound), beside the whole image.
The box is the bounding box of the mask's largest 8-connected component, made square around its centre, grown by
``margin`` times its side on every side, shifted to lie inside the image and clipped where the image is smaller.
An empty mask gives the whole image (the segmenter found no lesion).

References:
    Mendelson, E. B. et al. (2013). ACR BI-RADS Ultrasound. In: ACR BI-RADS Atlas, 5th ed. (margin, posterior
    features)
    Aumente-Maestro, C. et al. (2024). A multi-task framework for breast cancer segmentation and classification in
    ultrasound imaging. Computer Methods and Programs in Biomedicine 260:108540. doi:10.1016/j.cmpb.2024.108540
"""

from __future__ import annotations

import numpy as np

DEFAULT_MARGIN = 0.3
"""Margin on every side, as a fraction of the lesion box's larger side."""


def lesion_box(mask: np.ndarray, margin: float = DEFAULT_MARGIN, min_side: int = 32) -> tuple[int, int, int, int]:
    """The square box around the largest lesion of ``mask``, with ``margin``.

    Args:
        mask: bool or 0/1 ``(H, W)`` lesion mask at the image's size.
        margin: Margin on every side as a fraction (>= 0) of the lesion's larger bounding-box side.
        min_side: Smallest side of the box in pixels (tiny lesions keep some context), at most the image's.

    Returns:
        ``(y0, y1, x0, x1)``, half-open pixel bounds inside the image; the whole image when the mask is empty.

    Raises:
        ValueError: If ``mask`` is not 2-D or ``margin`` is negative.
    """
    from skimage.measure import label

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"A lesion mask must be 2-D (H, W); got shape {mask.shape}.")
    if margin < 0:
        raise ValueError(f"The crop margin must be >= 0, got {margin}.")
    h, w = mask.shape
    if not mask.any():
        return 0, h, 0, w
    components = label(mask > 0, connectivity=2)
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    ys, xs = np.nonzero(components == largest)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * (1 + 2 * margin)
    side = max(side, min_side)
    return _interval(cy, side, h) + _interval(cx, side, w)


def _interval(centre: float, side: float, size: int) -> tuple[int, int]:
    """``[lo, hi)`` of length ``round(side)`` around ``centre``, shifted inside ``[0, size)``, clipped if larger."""
    n = min(int(round(side)), size)
    lo = int(round(centre - n / 2))
    lo = min(max(lo, 0), size - n)
    return lo, lo + n


def crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``array[y0:y1, x0:x1]`` (an image ``(H, W[, C])`` or a mask), a copy."""
    y0, y1, x0, x1 = box
    return np.array(array[y0:y1, x0:x1])
