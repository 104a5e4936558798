"""Colour tables and colour-space conversions of uint8 images.

Heat maps are drawn with viridis (:func:`heat_lut`; van der Walt & Smith 2015, matplotlib's default map):
perceptually uniform, readable in grey and by colour-blind readers, and its blue-green-yellow does not merge with
eosin pink on H&E as jet's red does. Its 256 colours are stored here, so rendering needs no plotting library.
The jet map (:func:`jet_lut`) is kept, computed from its piecewise-linear definition.
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

_VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769"
    "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a"
    "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b"
    "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d"
    "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
    "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d"
    "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81"
    "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d"
    "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
    "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725"
)
"""matplotlib's viridis at 256 levels, RGB bytes in hex (``colormaps["viridis"](np.linspace(0, 1, 256))``)."""

HEAT_STOPS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
"""Five evenly spaced colours of :func:`heat_lut` (levels 0, 64, 128, 192, 255), for a CSS colour bar."""


def heat_lut() -> np.ndarray:
    """The heat-map colour table: viridis at 256 levels, uint8 ``(256, 3)``, level 0 dark purple to 255 yellow."""
    return np.frombuffer(bytes.fromhex("".join(_VIRIDIS_HEX)), dtype=np.uint8).reshape(256, 3)


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
