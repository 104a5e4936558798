"""DICOM pixel data for :mod:`breastdx.data.images`: the header checked before the pixels are decoded, the
modality LUT, windows (DICOM PS3.3 C.11.2.1.2), photometric interpretations, the frame read from a multi-frame
file (cine loop) and the pixel spacing (an ultrasound region's calibration, else PixelSpacing).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.data.decoded import ImageReadError, _check_size, _Decoded, _open

logger = logging.getLogger(__name__)


CM_UNITS = 3
"""PhysicalUnitsXDirection / YDirection code of centimetres (DICOM PS3.3 C.8.5.5.1.15)."""


def decode_dicom(src: Path | bytes, label: str, max_pixels: int, frame: int | None = None) -> _Decoded:
    """Decode a DICOM file (``src`` a path) or upload (``src`` its bytes) by the rules of
    :mod:`breastdx.data.images`: the modality LUT, the first window when given, MONOCHROME1 inverted.

    A multi-frame file (an ultrasound cine loop, NumberOfFrames > 1) gives its frame ``frame`` (1-based; default
    the first), decoded alone, and says so in ``frame`` (``(frame, number of frames)``). The spacing is that of
    :func:`dicom_spacing`.

    Raises:
        ImageReadError: If the header or the pixel data cannot be read, the image is over ``max_pixels``,
            or has a PhotometricInterpretation breastdx does not convert, or ``frame`` is past its last frame.
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
    try:
        frames = max(int(header.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        frames = 1
    index = 0 if frame is None else int(frame) - 1
    if not 0 <= index < frames:
        raise ImageReadError(f"{label}: frame {frame} asked, but the file holds {frames} frame(s) (1 to {frames}).")
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2"))
    syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", "unknown")
    try:
        ds = pydicom.dcmread(_open(src))
        if "PixelData" not in ds:
            raise ImageReadError(f"{label}: DICOM file without PixelData; it holds no image.")
        if frames > 1:  # decode the chosen frame only (pydicom >= 3)
            ds.pixel_array_options(index=index)
        arr = ds.pixel_array
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(
            f"{label}: cannot decode the DICOM pixel data (transfer syntax {syntax}; {type(err).__name__}: "
            f"{err}); the file may be truncated, or compressed with a codec that is not installed."
        ) from None
    spacing, note = dicom_spacing(ds, label)
    extra = {"spacing_mm": spacing, "spacing_note": note, "frame": (index + 1, frames) if frames > 1 else None}
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
                        invert=photometric == "MONOCHROME1", **extra)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:  # 16-bit palette entries: scale to 8-bit
            rgb = np.round(rgb.astype(np.float64) / 65535.0 * 255.0).astype(np.uint8)
        return _Decoded(rgb, "DICOM", photometric, wide=False, alpha=False, **extra)
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT") and arr.ndim == 3:
        # pydicom converts YBR to RGB when it decodes (its default as_rgb=True).
        if arr.dtype != np.uint8:
            return _Decoded(arr.astype(np.float64), "DICOM", photometric, wide=True, alpha=False, **extra)
        return _Decoded(arr, "DICOM", photometric, wide=False, alpha=False, **extra)
    raise ImageReadError(f"{label}: unsupported DICOM PhotometricInterpretation {photometric!r} with pixel "
                         f"data of shape {arr.shape}; expected MONOCHROME1/2, RGB, YBR or PALETTE COLOR.")


def dicom_spacing(ds: Any, label: str = "DICOM") -> tuple[tuple[float, float] | None, str]:
    """The pixel spacing of a DICOM image in the patient, ``(row, column)`` in mm, and why there is none.

    Ultrasound scanners write their calibration in the Sequence of Ultrasound Regions (0018,6011), not in
    PixelSpacing: per region, PhysicalDeltaX/Y (0018,602C/602E) in the units of PhysicalUnitsX/YDirection
    (0018,6024/6026; 3 = cm) and the bounds RegionLocationMinX0/MinY0/MaxX1/MaxY1. A region *qualifies* when
    both its units are cm and both deltas are > 0. The regions that qualify and contain the image centre are
    the image area; when none contains the centre, all that qualify are taken. When those agree (within 0.1%),
    their spacing is the answer, in mm (cm x 10); when they disagree, there is no spacing, and the note says
    which spacings disagree, because a lesion could lie in either region. Without a region that qualifies,
    PixelSpacing (0028,0030) is used: the file's own, else that of its Shared Functional Groups' Pixel Measures
    (multi-frame files: whole-slide microscopy, enhanced images). ImagerPixelSpacing is never used: it is measured
    at the detector.

    Args:
        ds: A pydicom dataset.
        label: The file's name for messages.

    Returns:
        ``(spacing, note)``: ``(row_mm, col_mm)`` or None, and "" or the reason why a calibration present in
        the file gives no spacing.

    References:
        DICOM PS3.3 C.8.5.5 (US Region Calibration Module).
    """
    chosen, note = _region_spacing(ds)
    if chosen is not None or note:
        return _plausible(chosen, "ultrasound regions (PhysicalDeltaX/Y) give") if chosen else (None, note)
    for holder in (ds, _pixel_measures(ds)):  # a multi-frame (enhanced, whole-slide) file keeps it per frame group
        if holder is not None and "PixelSpacing" in holder:
            try:
                row_mm, col_mm = (float(v) for v in holder.PixelSpacing)
            except (TypeError, ValueError):
                logger.warning("%s: ignoring malformed PixelSpacing %r", label, holder.PixelSpacing)
                continue
            return _plausible((row_mm, col_mm), "PixelSpacing gives")
    return None, ""


SPACING_RANGE_MM = (1e-5, 10.0)
"""Pixel spacings (mm) taken as a calibration: from 10 nm (far below a microscope's 0.25 µm at 40x) to 10 mm (far
above an ultrasound's 0.1 mm). A spacing outside, zero, negative or not finite is a placeholder or a fault, and
would turn every mm figure into 0 or an absurd number."""


def _plausible(spacing: tuple[float, float], source: str) -> tuple[tuple[float, float] | None, str]:
    """``(spacing, "")`` when both values lie in :data:`SPACING_RANGE_MM`, else ``(None, reason)``."""
    low, high = SPACING_RANGE_MM
    if all(math.isfinite(v) and low <= v <= high for v in spacing):
        return spacing, ""
    return None, (f"no mm figures: the file's {source} a pixel spacing of {spacing[0]:.4g} x {spacing[1]:.4g} "
                  f"mm (row x column), not a calibration (expected {low:g} to {high:g} mm per pixel)")


def _pixel_measures(ds: Any) -> Any:
    """The Pixel Measures item (0028,9110) of a multi-frame file's Shared Functional Groups (5200,9229), as whole-
    slide microscopy (PS3.3 C.8.12.4) and enhanced images write PixelSpacing; None without one."""
    try:
        return ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _region_spacing(ds: Any) -> tuple[tuple[float, float] | None, str]:
    """The spacing of :func:`dicom_spacing` from the ultrasound regions, or ``(None, reason)``, or ``(None, "")``
    when no region qualifies."""
    regions = []
    for r in ds.get("SequenceOfUltrasoundRegions", None) or []:
        try:
            units = int(r.get("PhysicalUnitsXDirection", -1)), int(r.get("PhysicalUnitsYDirection", -1))
            dx, dy = float(r.get("PhysicalDeltaX", 0)), float(r.get("PhysicalDeltaY", 0))
            box = tuple(int(r.get(k, -1)) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                                    "RegionLocationMaxX1", "RegionLocationMaxY1"))
        except (TypeError, ValueError):
            continue
        if units == (CM_UNITS, CM_UNITS) and dx > 0 and dy > 0 and math.isfinite(dx * dy):
            regions.append(((dy * 10.0, dx * 10.0), box))
    if not regions:
        return None, ""
    cx, cy = (int(ds.get("Columns", 0)) - 1) / 2.0, (int(ds.get("Rows", 0)) - 1) / 2.0
    central = [r for r in regions if r[1][0] <= cx <= r[1][2] and r[1][1] <= cy <= r[1][3]]
    chosen = central or regions
    first = chosen[0][0]
    if all(math.isclose(a, b, rel_tol=1e-3) for sp, _ in chosen for a, b in zip(sp, first)):
        return first, ""
    listed = ", ".join(f"{sp[0]:.4g} x {sp[1]:.4g} mm in x {box[0]}-{box[2]}, y {box[1]}-{box[3]}"
                       for sp, box in chosen)
    return None, (f"no mm figures: the ultrasound regions{' holding the image centre' if central else ''} "
                  f"disagree on the pixel spacing (row x column: {listed})")


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
