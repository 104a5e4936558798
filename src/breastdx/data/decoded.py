"""What the image decoders share (:mod:`breastdx.data.images` and :mod:`breastdx.data.dicom_pixels`): the
error, the decoded pixels before conversion, the size guard and the source opener."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.data.errors import DataError


class ImageReadError(DataError):
    """An image or mask file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class _Decoded:
    """A decoded file before conversion to the output mode.

    ``values`` is ``(H, W)`` or ``(H, W, C)`` with C in {2, 3, 4} (gray+alpha, RGB, RGBA); ``wide`` tells
    that the values are not 8-bit and must be rescaled; ``window`` then gives the display range ``(low, high)``
    mapped linearly to 0-255: the output range of a DICOM file's VOI LUT or window, or its values' own minimum and
    maximum (:func:`breastdx.data.dicom_pixels.grey_display`).
    """

    values: np.ndarray
    fmt: str
    mode: str
    wide: bool
    alpha: bool
    window: tuple[float, float] | None = None
    invert: bool = False
    spacing_mm: tuple[float, float] | None = None
    full_shape: tuple[int, int] | None = None
    spacing_note: str = ""
    frame: tuple[int, int] | None = None


def _check_size(label: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageReadError(
            f"{label}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a guard against decompression bombs); refusing to decode it."
        )


def _open(src: Path | bytes) -> Any:
    """What Pillow and pydicom open: the path, or a fresh in-memory file over the bytes."""
    return src if isinstance(src, Path) else io.BytesIO(src)
