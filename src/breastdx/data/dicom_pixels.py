"""DICOM pixel data for :mod:`breastdx.data.images`: the header checked before the pixels are decoded, the
modality LUT, windows (DICOM PS3.3 C.11.2.1.2), photometric interpretations, the frame read from a multi-frame
file (cine loop) and the pixel spacing (an ultrasound region's calibration, else PixelSpacing).

Patient data stays in the file: no error, warning or log record of this module quotes a header value, and pydicom's
own warnings and log records, which do, are withheld while breastdx reads (:func:`withhold_pydicom`).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.data.decoded import ImageReadError, _check_size, _Decoded, _open

logger = logging.getLogger(__name__)


CM_UNITS = 3
"""PhysicalUnitsXDirection / YDirection code of centimetres (DICOM PS3.3 C.8.5.5.1.15)."""


def decode_dicom(src: Path | bytes, label: str, max_pixels: int, frame: int | None = None) -> _Decoded:
    """Decode a DICOM file (``src`` a path) or upload (``src`` its bytes) by the rules of
    :mod:`breastdx.data.images`: greyscale by :func:`grey_display` (the modality LUT, the first VOI LUT or else the
    first window, padding shown black), MONOCHROME1 inverted.

    A multi-frame file (an ultrasound cine loop, NumberOfFrames > 1) gives its frame ``frame`` (1-based; default
    the first), decoded alone, and says so in ``frame`` (``(frame, number of frames)``). The spacing is that of
    :func:`dicom_spacing`.

    The file is read inside :func:`withhold_pydicom`: pydicom's warnings and log records, which quote header values,
    are withheld. No message of this function carries a value of the file's header either (an identifier could be
    in any element of a malformed file): an error names ``label``, the stage that failed, the exception's type and
    at most the transfer syntax UID or a PhotometricInterpretation that is a well-formed DICOM code, never the text
    of pydicom's exception.

    Raises:
        ImageReadError: If the header or the pixel data cannot be read, or a header value the conversion needs
            (rescale, window, palette, spacing) is malformed, the image is over ``max_pixels``, or has a
            PhotometricInterpretation breastdx does not convert, or ``frame`` is past its last frame.
    """
    import pydicom.pixels  # noqa: F401 - its modules' loggers exist before withhold_pydicom looks for them

    with withhold_pydicom(label):
        try:
            return _decode_dicom(src, label, max_pixels, frame)
        except (ImageReadError, MemoryError):
            raise
        except Exception as err:  # a header value that apply_modality_lut, apply_color_lut... cannot use
            failed = type(err).__name__
    # raised outside the except clause, so that no exception quoting a value hangs on it as its __context__
    raise ImageReadError(f"{label}: cannot convert the decoded DICOM pixels ({failed}); a header value they need "
                         f"(rescale, window, palette or spacing) is malformed.")


def _decode_dicom(src: Path | bytes, label: str, max_pixels: int, frame: int | None) -> _Decoded:
    import pydicom

    failed = None
    try:
        header = pydicom.dcmread(_open(src), stop_before_pixels=True)
    except Exception as err:  # InvalidDicomError, OSError, EOFError, ValueError... on broken files
        failed = type(err).__name__
    if failed is not None:
        raise ImageReadError(f"{label}: cannot read the DICOM header ({failed}); the file is truncated or corrupt.")
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
    syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
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
        failed = type(err).__name__
    if failed is not None:
        raise ImageReadError(f"{label}: cannot decode the DICOM pixel data ({failed}; {_syntax_said(syntax)}); "
                             f"{_why_undecodable(syntax)}.")
    spacing, note = dicom_spacing(ds, label)
    extra = {"spacing_mm": spacing, "spacing_note": note, "frame": (index + 1, frames) if frames > 1 else None}
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim != 2:
            raise ImageReadError(f"{label}: {photometric} pixel data of shape {arr.shape}; expected (rows, columns).")
        values, window = grey_display(arr, ds, label)
        return _Decoded(values, "DICOM", photometric, wide=window is not None, alpha=False, window=window,
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
    said = repr(photometric) if _CODE_STRING.fullmatch(photometric) else "(a value that is no DICOM code string)"
    raise ImageReadError(f"{label}: unsupported DICOM PhotometricInterpretation {said} with pixel "
                         f"data of shape {arr.shape}; expected MONOCHROME1/2, RGB, YBR or PALETTE COLOR.")


_CODE_STRING = re.compile(r"[A-Z0-9 _]{1,16}")
"""A well-formed CS value (PS3.5 6.2): upper-case letters, digits, space and underscore, at most 16."""

_UID = re.compile(r"[0-9]{1,64}(\.[0-9]{1,64})*")
"""A well-formed UI value's characters (PS3.5 9.1): digits and dots."""


def _syntax_said(syntax: Any) -> str:
    """The transfer syntax for a message: its UID and pydicom's name for it, or that it is malformed or absent."""
    if syntax is None:
        return "no transfer syntax"
    text = str(syntax)
    if len(text) > 64 or not _UID.fullmatch(text):
        return "a malformed transfer syntax UID"
    from pydicom.uid import UID

    name = UID(text).name
    return f"transfer syntax {text}" + (f", {name}" if name != text else "")


def _why_undecodable(syntax: Any) -> str:
    """Why pixel data of ``syntax`` may not decode, in pydicom's words about its own plugins (never the file's)."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(str(syntax))
    except Exception:  # noqa: BLE001 - NotImplementedError for a syntax pydicom has no decoder for; a malformed UID
        return "pydicom has no decoder for this transfer syntax"
    if not decoder.is_available:
        return f"no plugin that decodes it is installed ({'; '.join(decoder.missing_dependencies)})"
    return "the file may be truncated, or its pixel data may not match its header (Rows, Columns, bits, frames)"


class _Withheld(threading.local):
    """What this thread's :func:`withhold_pydicom` scope is withholding: its depth and the warnings and log records
    withheld so far."""

    depth = 0
    warnings = 0
    records = 0


_WITHHELD = _Withheld()
_INSTALLING = threading.Lock()


class _InScope(logging.Filter):
    """True for what a thread says inside :func:`withhold_pydicom`, false elsewhere. It serves as the message
    pattern of a ``warnings`` filter (the warnings machinery calls its :meth:`match` with the message) and as a
    ``logging`` filter (which keeps a record when :meth:`filter` is true)."""

    def match(self, text: str) -> bool:
        if _WITHHELD.depth:
            _WITHHELD.warnings += 1
            return True
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        if _WITHHELD.depth:
            _WITHHELD.records += 1
            return False
        return True


_IN_SCOPE = _InScope()
_IGNORE_IN_SCOPE = ("ignore", _IN_SCOPE, Warning, None, 0)
"""The ``warnings.filters`` entry: ignore every warning said in a thread inside :func:`withhold_pydicom`."""


def _install() -> None:
    """Put :data:`_IGNORE_IN_SCOPE` first in ``warnings.filters`` (a ``catch_warnings`` block, pytest's included,
    may have put another list in place, or other filters in front of it, since the last read) and :data:`_IN_SCOPE`
    on every pydicom logger (``pydicom`` and the ``pydicom.*`` of its modules, whose records a filter of the parent
    would not see)."""
    filters = warnings.filters
    if not filters or filters[0] is not _IGNORE_IN_SCOPE:
        with _INSTALLING:
            while _IGNORE_IN_SCOPE in filters:
                filters.remove(_IGNORE_IN_SCOPE)
            filters.insert(0, _IGNORE_IN_SCOPE)
            getattr(warnings, "_filters_mutated", lambda: None)()  # what warnings.filterwarnings calls after a change
    for name, log in list(logging.Logger.manager.loggerDict.items()):
        if (name == "pydicom" or name.startswith("pydicom.")) and isinstance(log, logging.Logger):
            log.addFilter(_IN_SCOPE)  # once: addFilter does not add a filter twice


@contextmanager
def withhold_pydicom(label: str | None = None) -> Iterator[None]:
    """Withhold, in this thread and while the block runs, every warning and every record of the pydicom loggers:
    they quote header values ("Invalid value for VR DA: '19800101'", "Unknown encoding '...'"; pydicom's reading
    validation warns by default), and an identifier can stand in any element of a malformed file. With ``label``,
    their number is then logged (``breastdx.data.dicom_pixels``, INFO), without their text.

    Thread-safe, and other threads are untouched: ``warnings.catch_warnings`` and ``pydicom.config`` (its
    ``reading_validation_mode``) are process-wide, so that a block in one thread would change what another thread
    (a library user's own pydicom reads included) sees, and could restore over another block; neither is used. Instead
    one ``warnings.filters`` entry and a filter on each pydicom logger, both true only for a thread inside this block,
    are put in place at each entry (:func:`_install`) and stay: outside a block they let every warning and record
    through, as before. A filter that another thread's ``catch_warnings`` block puts in front of the entry while it
    runs (pytest's ``simplefilter("always")``, say) is seen first until this thread's next read puts it back in front.
    """
    _install()
    here = _WITHHELD
    if here.depth == 0:
        here.warnings = here.records = 0
    here.depth += 1
    try:
        yield
    finally:
        here.depth -= 1
        withheld = max(here.warnings, here.records)  # pydicom's warn_and_log says each thing twice: a warning, a log
        if here.depth == 0 and withheld and label is not None:
            logger.info("%s: %d warning(s) of pydicom withheld (malformed header values or character sets; their "
                        "text could quote patient data)", label, withheld)


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
                # not the value: a malformed element can hold anything, an identifier included (and reading it
                # again, to log it, raised again, out of this except clause)
                logger.warning("%s: ignoring a malformed PixelSpacing (not two numbers)", label)
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


def grey_display(arr: np.ndarray, ds: Any, label: str = "DICOM") -> tuple[np.ndarray, tuple[float, float] | None]:
    """A MONOCHROME1/2 image's values and the display range that maps them to 8 bits, by DICOM's greyscale pipeline.

    1. The modality LUT (RescaleSlope/Intercept or Modality LUT Sequence; PS3.3 C.11.1), by pydicom.
    2. The VOI transform (PS3.3 C.11.2), by pydicom, whose rule is followed: the first item of the VOI LUT Sequence
       (0028,3010) when there is one (``apply_voi``), else the first WindowCenter/WindowWidth (``apply_windowing``:
       LINEAR, LINEAR_EXACT or SIGMOID by VOILUTFunction), else none. The LUT's inputs are the modality values
       rounded and clipped to its entries (C.11.2.1.1: below the first entry the first, past the last the last).
       A LUT or window pydicom cannot apply (malformed, or an entry depth other than 8 or 10-16 bits) is passed over
       with a warning naming the file, for the window or the stretch.
    3. One normalisation for all: the VOI output range (a LUT's 0 to 2^bits - 1, bits its LUTDescriptor's third
       value; a window's output range as pydicom gives it) is returned as the range ``(low, high)`` that
       :mod:`breastdx.data.images` maps linearly to 0-255 (as a LINEAR_EXACT window would, C.11.2.1.3.2). Without a VOI the range is the image's own min and max (a constant
       image gives 0); 8-bit stored values that the modality LUT leaves as they are are kept (window None), and
       stored values of 1 to 7 bits (BitsStored) so left span their range, 0 to 2^BitsStored - 1 (1-bit: 0, 255).
    4. Padding (PixelPaddingValue (0028,0120), and every stored value from it to PixelPaddingRangeLimit (0028,0121)
       inclusive; PS3.3 C.7.5.1.1.2) is matched on the stored values, takes no part in the min and max, and is shown
       black, the darkest displayed value: the bottom of the range for MONOCHROME2, its top for MONOCHROME1 (which
       :mod:`~breastdx.data.images` inverts), 0 after the inversion in both. Non-finite values (float pixel data)
       are shown as the bottom of the range.

    Args:
        arr: Stored pixel values, shape ``(rows, columns)``, as pydicom decodes them (sign-extended).
        ds: The pydicom dataset.
        label: The file's name for log messages (no header value is logged).

    Returns:
        ``(values, window)``: float64 ``(rows, columns)`` values and their display range ``(low, high)``, or
        ``uint8`` values (before any MONOCHROME1 inversion) and None.

    References:
        DICOM PS3.3 C.7.5.1.1.2 (Pixel Padding), C.11.1 (Modality LUT), C.11.2 (VOI LUT).
    """
    from pydicom.pixels import apply_modality_lut

    monochrome1 = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    padding = _padding(arr, ds, label)
    voi = _voi(values, ds, label)
    if voi is None and arr.dtype == np.uint8 and np.array_equal(values, arr):
        bits = int(ds.get("BitsStored", 8) or 8)
        if bits < 8:  # 1 to 7 bits stored: their range, not 0-255, is the display's (a 1-bit image: 0 and 255)
            voi = values, 0.0, float(2**bits - 1)
        else:
            eight = arr.astype(np.uint8)  # a copy: the stored values, padding made black
            if padding is not None:
                eight[padding] = 255 if monochrome1 else 0
            return eight, None
    if voi is None:
        kept = values if padding is None else values[~padding]
        kept = kept[np.isfinite(kept)]
        lo, hi = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 0.0)
        out, hi = values, (hi if hi > lo else lo + 1.0)  # a constant image: all at the bottom
    else:
        out, lo, hi = voi
    unseen = ~np.isfinite(out)
    if unseen.any():  # in place: no second float copy of a large image
        out[unseen] = lo
    if padding is not None:
        out[padding] = hi if monochrome1 else lo
    return out, (lo, hi)


def _voi(values: np.ndarray, ds: Any, label: str) -> tuple[np.ndarray, float, float] | None:
    """The VOI transform of :func:`grey_display` applied to the modality values by pydicom: ``(output, bottom,
    top)``, the output's range being ``bottom`` (shown darkest) to ``top``; None without a VOI that applies."""
    from pydicom.pixels import apply_voi, apply_windowing

    if ds.get("VOILUTSequence"):
        try:
            entries, first, bits = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
            entries = entries or 2**16  # PS3.3 C.11.2.1.1: 0 means 65536 entries
            # rounded and clipped here: pydicom 3.0 puts input - first in an array of the LUT's own dtype, where an
            # input past a LUT of 8-bit entries would wrap around (first + 256 -> entry 0) instead of clipping
            index = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
            return np.asarray(apply_voi(index, ds, 0), dtype=np.float64), 0.0, float(2**bits - 1)
        except Exception as err:  # noqa: BLE001 - malformed, or a depth pydicom refuses: passed over, said
            logger.warning("%s: its VOI LUT Sequence (0028,3010) cannot be applied (%s; expected a LUTDescriptor of "
                           "3 values, 8 or 10-16 bits per entry and as many LUTData values as entries); the window "
                           "or the min-max stretch is used instead", label, type(err).__name__)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            with np.errstate(over="ignore"):  # SIGMOID's exp far from the centre: 0 or inf, as wanted
                out = apply_windowing(values, ds, 0)
                bottom, top = apply_windowing(np.array([-np.inf, np.inf]), ds, 0)  # the output range pydicom uses
            if not (math.isfinite(bottom) and math.isfinite(top) and bottom != top):
                raise ValueError("no output range")
            return np.asarray(out, dtype=np.float64), float(bottom), float(top)
        except Exception as err:  # noqa: BLE001 - a malformed window: passed over, said
            logger.warning("%s: its window (WindowCenter/WindowWidth, 0028,1050/1051) cannot be applied (%s; expected "
                           "numbers, a width >= 1 (LINEAR) or > 0, and VOILUTFunction LINEAR, LINEAR_EXACT or "
                           "SIGMOID); the min-max stretch is used instead", label, type(err).__name__)
    return None


def _padding(arr: np.ndarray, ds: Any, label: str) -> np.ndarray | None:
    """Where the stored values are padding (PS3.3 C.7.5.1.1.2): equal to PixelPaddingValue, or from it to
    PixelPaddingRangeLimit inclusive (either end may be the lower); None when the file declares none or no pixel is
    padding. A value written as unsigned (VR US) for signed pixels is read as its two's complement."""
    if "PixelPaddingValue" not in ds:
        return None
    try:
        ends = [_stored(ds.PixelPaddingValue, ds)]
        if "PixelPaddingRangeLimit" in ds:
            ends.append(_stored(ds.PixelPaddingRangeLimit, ds))
    except (TypeError, ValueError, AttributeError):
        logger.warning("%s: ignoring a malformed PixelPaddingValue/PixelPaddingRangeLimit (expected one integer "
                       "each); padding, if any, takes part in the stretch", label)
        return None
    mask = (arr >= min(ends)) & (arr <= max(ends))
    return mask if mask.any() else None


def _stored(value: Any, ds: Any) -> int:
    """A padding value as a stored pixel value: signed pixels (PixelRepresentation 1) read a US value of
    BitsAllocated bits as two's complement."""
    v = int(value)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if int(ds.get("PixelRepresentation", 0)) == 1 and 2 ** (bits - 1) <= v < 2**bits:
        v -= 2**bits
    return v
