"""Heat maps (Grad-CAM and the like) coloured with viridis (:func:`~breastdx.visualize.colors.heat_lut`): blended
into an image, or as a transparent layer; :func:`with_legend` adds a colour bar and a caption below an overlay."""

from __future__ import annotations

from typing import Callable

import numpy as np

from breastdx.visualize.colors import REFERENCE_COLOR, check_image, heat_lut, to_rgb
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
        _BLEND[alpha] = (gray * (1.0 - w) + heat_lut()[None].astype(np.float32) * w + 0.5).astype(np.uint8)
    return _BLEND[alpha]


def heatmap_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA,
                    contour_mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a map, coloured with viridis, over an image.

    Each pixel becomes ``(1 - w) * image + w * viridis(cam)`` with ``w = alpha * cam`` (the map quantised to
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
        out = (to_rgb(a) * (1.0 - w) + heat_lut()[level] * w + 0.5).astype(np.uint8)
    if contour_mask is not None:
        out[contour(np.asarray(contour_mask, dtype=bool), line_width(out.shape))] = REFERENCE_COLOR
    return out


def heatmap_rgba(cam: np.ndarray) -> np.ndarray:
    """A map in [0, 1] as an RGBA layer: viridis colours, opacity growing with the map (cold regions transparent).

    Values outside [0, 1] are clipped.

    Shape:
        ``(H, W)`` float -> ``(H, W, 4)`` uint8.
    """
    c = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    idx = (c * 255.0 + 0.5).astype(np.uint8)
    rgba = np.empty(c.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = heat_lut()[idx]
    rgba[..., 3] = idx
    return rgba


def with_legend(overlay: np.ndarray, lines: list[str], reference: bool = False) -> np.ndarray:
    """The overlay with a legend strip below it: a colour bar (low to high, the map's scale) and text lines.

    Args:
        overlay: uint8 ``(H, W, 3)``, a :func:`heatmap_overlay`.
        lines: Caption lines, e.g. the class the map explains, its probability and the file name; a line wider
            than the strip is wrapped (:func:`wrap_text`), never cut off.
        reference: Also say that the green contour is the reference mask, not the model's output.

    Returns:
        uint8 ``(H + legend, max(W, 240), 3)``: the overlay on top (left-aligned on white where the legend is
        wider), the legend below.
    """
    from PIL import Image, ImageDraw, ImageFont

    out = check_image(overlay)
    h, w = out.shape[:2]
    font = ImageFont.load_default()
    width, line_h = max(w, 240), 13
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    texts = [part for text in [*lines, *(["green contour: the reference mask, not model output"] if reference else []),
                               "Research use only - not for diagnosis."]
             for part in wrap_text(text, lambda t: measure(t, font=font), width - 8)]
    strip = Image.new("RGB", (width, 20 + line_h * (len(texts) + 1)), "white")
    draw = ImageDraw.Draw(strip)
    bar_w = min(width - 80, 200)
    strip.paste(Image.fromarray(np.repeat(heat_lut()[None, np.linspace(0, 255, bar_w).astype(int)], 10, axis=0)),
                (40, 6))
    draw.text((4, 4), "low", fill="black", font=font)
    draw.text((44 + bar_w, 4), "high", fill="black", font=font)
    for i, text in enumerate(texts):
        draw.text((4, 20 + i * line_h), text, fill="black", font=font)
    canvas = np.full((h + strip.height, width, 3), 255, dtype=np.uint8)
    canvas[:h, :w] = to_rgb(out) if out.ndim == 2 else out
    canvas[h:] = np.asarray(strip)
    return canvas


def wrap_text(text: str, length: Callable[[str], float], max_width: float) -> list[str]:
    """``text`` cut into lines no wider than ``max_width`` by ``length`` (a text's drawn width): at spaces, and
    inside a word (a long file name) only where the word alone is wider. Nothing is dropped: the lines joined
    (a space where a line was cut at one) give ``text`` back.

    Args:
        text: One caption line.
        length: Drawn width of a string, in pixels.
        max_width: Widest line allowed, in pixels.

    Returns:
        At least one line (``[""]`` for an empty text).
    """
    out: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if length(candidate) <= max_width or not candidate:
            line = candidate
            continue
        if line:
            out.append(line)
        line = word
        while len(line) > 1 and length(line) > max_width:  # a word wider than a line: cut it where it must
            k = 1
            while length(line[:k + 1]) <= max_width:
                k += 1
            out.append(line[:k])
            line = line[k:]
    return [*out, line]


REGION_COLOR = (0, 230, 255)
"""RGB colour of the square marking the region a label refers to (cyan)."""

SEEN_SQUARE = "the model reads the central square only: no map outside it"
"""Legend line of an overlay of a model that reads an image's central square only (``preprocessing.source_crop``)."""


def mark_region(overlay: np.ndarray, fraction: float) -> np.ndarray:
    """A copy of the overlay with the centred square covering ``fraction`` of each side outlined in
    :data:`REGION_COLOR` (PCam: the centre 32 x 32 of 96 x 96 px defines the patch's label).

    Shape:
        uint8 ``(H, W, 3)`` -> the same.
    """
    h, w = check_image(overlay).shape[:2]
    y0, x0 = round(h * (1 - fraction) / 2), round(w * (1 - fraction) / 2)
    y1, x1 = round(h * (1 + fraction) / 2), round(w * (1 + fraction) / 2)
    return mark_box(overlay, y0, x0, y1, x1)


def mark_box(overlay: np.ndarray, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    """A copy of the overlay with the box ``[y0, y1) x [x0, x1)`` outlined in :data:`REGION_COLOR` (a line of
    about 1/96 of the shorter side).

    Shape:
        uint8 ``(H, W, 3)`` -> the same.
    """
    out = check_image(overlay).copy()
    t = max(1, round(min(out.shape[:2]) / 96))
    for sl in ((slice(y0, y0 + t), slice(x0, x1)), (slice(y1 - t, y1), slice(x0, x1)),
               (slice(y0, y1), slice(x0, x0 + t)), (slice(y0, y1), slice(x1 - t, x1))):
        out[sl] = REGION_COLOR
    return out
