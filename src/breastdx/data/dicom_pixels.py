"""DICOM pixel data for :mod:`breastdx.data.images`: the header checked before the pixels are decoded, the
modality LUT, windows (DICOM PS3.3 C.11.2.1.2) and photometric interpretations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from breastdx.data.decoded import ImageReadError, _check_size, _Decoded, _open

logger = logging.getLogger(__name__)


def decode_dicom(src: Path | bytes, label: str, max_pixels: int) -> _Decoded:
    """Decode a DICOM file (``src`` a path) or upload (``src`` its bytes) by the rules of
    :mod:`breastdx.data.images`: the modality LUT, the first window when given, MONOCHROME1 inverted.

    Raises:
        ImageReadError: If the header or the pixel data cannot be read, the image is over ``max_pixels``,
            has several frames, or has a PhotometricInterpretation breastdx does not convert.
    """
    import pydicom

    try:
        header = pydicom.dcmread(_open(src), stop_before_pixels=True)
    except Exception as err:  # InvalidDicomError, OSError, EOFError, ValueError... on broken files
        raise ImageReadError(f"{label}: cannot read the DICOM header ({type(err).__name__}: {err}).") from None
    rows, cols = header.get("Rows"), header.get("Columns")
    if rows is None or cols is None:
        raise ImageReadError(f"{label}: DICOM file without Rows/Columns; it holds no image.")
    _check_size(label, int(cols), int(rows), max_pixels)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(f"{label}: DICOM with {frames} frames; expected a single 2-D image.")
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2"))
    syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", "unknown")
    try:
        ds = pydicom.dcmread(_open(src))
        if "PixelData" not in ds:
            raise ImageReadError(f"{label}: DICOM file without PixelData; it holds no image.")
        arr = ds.pixel_array
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(
            f"{label}: cannot decode the DICOM pixel data (transfer syntax {syntax}; {type(err).__name__}: "
            f"{err}); the file may be truncated, or compressed with a codec that is not installed."
        ) from None
    spacing = None
    if "PixelSpacing" in ds:
        try:
            row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
            spacing = (row_mm, col_mm)
        except (TypeError, ValueError):
            logger.warning("%s: ignoring malformed PixelSpacing %r", label, ds.PixelSpacing)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim != 2:
            raise ImageReadError(f"{label}: {photometric} pixel data of shape {arr.shape}; expected (rows, columns).")
        from pydicom.pixels import apply_modality_lut

        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        window = _dicom_window(ds)
        eight_bit = arr.dtype == np.uint8 and window is None and "RescaleSlope" not in ds
        if eight_bit:
            values = arr.astype(np.uint8)
        return _Decoded(values, "DICOM", photometric, wide=not eight_bit, alpha=False, window=window,
                        invert=photometric == "MONOCHROME1", spacing_mm=spacing)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:  # 16-bit palette entries: scale to 8-bit
            rgb = np.round(rgb.astype(np.float64) / 65535.0 * 255.0).astype(np.uint8)
        return _Decoded(rgb, "DICOM", photometric, wide=False, alpha=False, spacing_mm=spacing)
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT") and arr.ndim == 3:
        # pydicom converts YBR to RGB when it decodes (its default as_rgb=True).
        if arr.dtype != np.uint8:
            return _Decoded(arr.astype(np.float64), "DICOM", photometric, wide=True, alpha=False,
                            spacing_mm=spacing)
        return _Decoded(arr, "DICOM", photometric, wide=False, alpha=False, spacing_mm=spacing)
    raise ImageReadError(f"{label}: unsupported DICOM PhotometricInterpretation {photometric!r} with pixel "
                         f"data of shape {arr.shape}; expected MONOCHROME1/2, RGB, YBR or PALETTE COLOR.")


def _dicom_window(ds) -> tuple[float, float, str] | None:
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None

    def first(v) -> float:
        try:
            return float(v[0])
        except TypeError:
            return float(v)

    try:
        center, width = first(ds.WindowCenter), first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    if width <= 0:
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    return center, width, function
