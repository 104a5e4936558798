"""PNG encoding of rendered images: bytes, data URLs, and the mask, contour and heat-map files.

Files are written with fast zlib compression (level 1): overlays are for looking at, and writing them
must not slow a batch prediction down.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from breastdx.visualize.colors import PREDICTION_COLOR, REFERENCE_COLOR
from breastdx.visualize.contours import check_masks, contour, line_width, overlay_contours
from breastdx.visualize.heatmap import heatmap_overlay, with_legend

PNG_COMPRESS_LEVEL = 1
"""zlib level of every PNG written here (fast)."""


def png_bytes(image: np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode a gray, RGB or RGBA image as PNG: "sub" filter on every row, zlib at ``level`` (fast; zlib
    releases the GIL).

    Pillow tries several filters per row, which costs more than the compression itself for overlays;
    one fixed filter gives files of about the same size several times faster, so batch prediction can write
    one overlay per image, and the service answer one, without slowing down.

    Args:
        image: uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``.
        level: zlib level, 0-9.

    Returns:
        The PNG file's bytes (8-bit gray, RGB or RGBA, no interlacing).

    Raises:
        ValueError: For another shape.

    References:
        W3C (2003). Portable Network Graphics (PNG) Specification, 2nd ed., sections 9.2 (filter type 1)
        and 11.2.2 (IHDR).
    """
    a = np.ascontiguousarray(image, dtype=np.uint8)
    channels = 1 if a.ndim == 2 else a.shape[2] if a.ndim == 3 else 0
    color_type = {1: 0, 3: 2, 4: 6}.get(channels)
    if color_type is None:
        raise ValueError(f"Expected a uint8 image (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}.")
    h, w = a.shape[:2]
    flat = a.reshape(h, w * channels)
    raw = np.empty((h, w * channels + 1), dtype=np.uint8)
    raw[:, 0] = 1  # filter type 1 (sub): each byte minus the byte of the previous pixel
    raw[:, 1:1 + channels] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=raw[:, 1 + channels:], casting="unsafe")  # mod 256

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
            + chunk(b"IEND", b""))


def png_data_url(image: np.ndarray) -> str:
    """An image as a ``data:image/png;base64,...`` URL (:func:`png_bytes`).

    Args:
        image: uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``.

    Raises:
        ValueError: For another shape.
    """
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def write_cam_png(image: np.ndarray, cam: np.ndarray, path: Path, contour_mask: np.ndarray | None = None,
                  legend: list[str] | None = None) -> Path:
    """Write :func:`~breastdx.visualize.heatmap.heatmap_overlay` as a PNG file (:func:`png_bytes`).

    Args:
        image: uint8 ``(H, W)`` or ``(H, W, 3)``.
        cam: Map in [0, 1], ``(H, W)``.
        path: PNG file to write.
        contour_mask: A reference lesion mask ``(H, W)`` drawn as a green contour, or None.
        legend: Caption lines for a legend strip below the overlay (:func:`~breastdx.visualize.heatmap.
            with_legend`: colour bar, the lines, what the green contour is), or None for the bare overlay.

    Returns:
        ``path``.

    Raises:
        ValueError: If the image is not uint8 ``(H, W)`` / ``(H, W, 3)`` or the map's shape differs from it.
    """
    overlay = heatmap_overlay(image, cam, contour_mask=contour_mask)
    if legend is not None:
        overlay = with_legend(overlay, legend, reference=contour_mask is not None)
    Path(path).write_bytes(png_bytes(overlay))
    return Path(path)


def write_mask_png(mask: np.ndarray, path: Path) -> Path:
    """Write a binary mask as an 8-bit grey PNG with values {0, 255} (the BUSI convention).

    Args:
        mask: bool ``(H, W)``.
        path: File to write.

    Returns:
        ``path``.
    """
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(
        path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return path


def write_instance_labels(labels: np.ndarray, stem: Path) -> Path:
    """Write instance labels (int ``(H, W)``, 0 background, 1..N the instances) losslessly: ``stem.png`` as a 16-bit
    grey PNG, or ``stem.tif`` as a zlib-compressed 32-bit TIFF beyond 65535 instances. Returns the path written.
    The suffix is added to ``stem``'s name, never put in place of a dot in it (``slide.01`` is ``slide.01.png``)."""
    stem = Path(stem)
    if labels.max(initial=0) <= 65535:
        path = stem.with_name(f"{stem.name}.png")
        Image.fromarray(labels.astype(np.uint16)).save(path, compress_level=1)
        return path
    import tifffile

    path = stem.with_name(f"{stem.name}.tif")
    tifffile.imwrite(path, labels.astype(np.uint32), compression="zlib")
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

    Returns:
        ``path``.

    Raises:
        ValueError: If the image is not uint8 ``(H, W)`` / ``(H, W, 3)`` or a mask does not fit it.
    """
    masks = [mask] if reference is None else [reference, mask]
    colors = [PREDICTION_COLOR] if reference is None else [REFERENCE_COLOR, PREDICTION_COLOR]
    a = np.asarray(image)
    if a.dtype == np.uint8 and a.ndim == 2:
        picture = _gray_palette_image(a, check_masks(a.shape, masks), colors, line_width(a.shape))
    else:
        picture = Image.fromarray(overlay_contours(a, masks, colors))
    picture.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return path
