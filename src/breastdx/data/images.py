"""Reading 2-D medical images and masks: PNG, JPEG and TIFF through Pillow, DICOM through pydicom.

The format is found from the file's first bytes (its "magic number"), never from its name, so a text file
named ``.png`` is reported as "not an image" and a DICOM file named ``.png`` is read as DICOM.

Every image comes back as ``uint8``, either gray ``(H, W)`` or RGB ``(H, W, 3)``, by these rules:

* **8-bit data** (Pillow modes ``L``, ``RGB``, ``P``, ``1``, ``CMYK``, ``YCbCr``; 8-bit DICOM without a
  window) keep their values. ``1`` becomes {0, 255}; palette images are looked up; other colour spaces
  are converted to RGB by Pillow.
* **Wider data** (Pillow modes ``I;16``, ``I;16B``, ``I``, ``F``; 16-bit DICOM) are rescaled linearly from
  the image's own minimum and maximum to [0, 255] and rounded: ``round(255 * (v - min) / (max - min))``
  (a constant image becomes all 0). DICOM (:func:`breastdx.data.dicom_pixels.grey_display`) first applies the
  modality LUT (RescaleSlope/Intercept), then, by pydicom's rule, the first VOI LUT (0028,3010) or else the first
  window (WindowCenter/WindowWidth; LINEAR, LINEAR_EXACT or SIGMOID), whose output range, not the image's min and
  max, is mapped to [0, 255] (DICOM PS3.3 C.11.2). Padding pixels (PixelPaddingValue, PixelPaddingRangeLimit;
  PS3.3 C.7.5.1.1.2) take no part in the min and max and are black. MONOCHROME1 is inverted, so that high values
  are always bright.
* **Transparency** (``RGBA``, ``LA``, ``PA``, palettes with a transparent entry, gray or RGB with a transparent
  colour, PNG's tRNS) is removed by compositing
  on the background of the modality: on black for gray images (ultrasound), ``round(colour * alpha / 255)``, and
  on white for colour images (H&E: the glass; whole-slide readers such as OpenSlide answer transparent pixels
  outside the scanned area), ``round(colour * alpha / 255 + 255 * (1 - alpha / 255))``.
* **Gray from colour** uses ITU-R 601-2 luma, exactly as Pillow's ``convert("L")``
  (``L = 0.299 R + 0.587 G + 0.114 B``), so an RGB file whose three channels are equal gives the same
  array as the same image stored as gray. **RGB from gray** repeats the gray channel three times.

Masks (:func:`read_mask`) are read with the same decoder and turned into ``bool`` ``(H, W)``:
foreground is any colour channel > 0. For masks with an alpha channel the colour channels decide, and the
alpha channel is used only when every colour value is 0 (a mask drawn as transparency). The BUSI public
release ships 1-bit masks, 8-bit RGB masks and RGBA masks whose alpha is 255 everywhere and whose colour
is {0, 255} (e.g. ``benign (4)_mask_1.png``), which is why colour, not alpha, comes first.

A decompression bomb is refused before any pixel is decoded: the width and height are read from the
header and compared with ``max_pixels``. Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, about
179 million pixels before it refuses) also applies. Truncated or corrupt files are detected by decoding
the whole image.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from breastdx.data.decoded import ImageReadError, _check_size, _Decoded, _open

logger = logging.getLogger(__name__)

MAX_PIXELS: int = 100_000_000
"""Largest image accepted, in pixels (width x height), checked from the header before decoding."""

MODES = ("gray", "rgb")
"""Output modes of :func:`read_image`."""

_PIL_8BIT = {"1", "L", "P", "RGB", "RGBA", "LA", "PA", "La", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"}
_PIL_WIDE = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_REDUCIBLE = {"L", "RGB", "RGBA", "LA", "La", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}  # box average is right


@dataclass(frozen=True)
class ImageRecord:
    """One decoded image.

    Attributes:
        array: Pixel values, ``uint8``, shape ``(H, W)`` for ``mode="gray"`` or ``(H, W, 3)`` for ``"rgb"``.
        path: The file read.
        spacing_mm: ``(row, column)`` pixel spacing in millimetres: for DICOM, the calibration of the ultrasound
            region holding the image (0018,6011, cm x 10), else PixelSpacing (0028,0030); None for other formats,
            when the DICOM file has neither, or when its ultrasound regions disagree (``spacing_note`` says so).
            ImagerPixelSpacing is not used: it is measured at the detector, not in the patient
            (:func:`breastdx.data.dicom_pixels.dicom_spacing`).
        source_format: ``"PNG"``, ``"JPEG"``, ``"TIFF"`` or ``"DICOM"``; ``"NPZ"`` or ``"HDF5"`` for an image of an
            array file (:mod:`breastdx.data.array_images`).
        source_mode: The stored pixel layout: a Pillow mode (``"L"``, ``"RGB"``, ``"RGBA"``, ``"I;16"``,
            ``"1"``, ``"P"``, ...) or a DICOM PhotometricInterpretation (``"MONOCHROME2"``, ``"RGB"``, ...).
        full_shape: ``(H, W)`` of the image as stored when it was decoded reduced (``max_side`` of
            :func:`read_image_bytes`; ``spacing_mm`` is then that of the reduced pixels), else None.
        colourfulness: Mean chroma of the stored colours, ``max(R, G, B) - min(R, G, B)`` over 255 averaged over
            the pixels, in [0, 1] (0 for a grey image, about 0.2-0.4 for H&E), measured before any conversion to
            gray; None where unknown.
        spacing_note: Why a DICOM calibration gives no ``spacing_mm`` (ultrasound regions that disagree); "" else.
        frame: ``(frame read, number of frames)``, 1-based, for a multi-frame DICOM (a cine loop: the first frame
            is read); None for a single image.
        brightness: Mean of the decoded 8-bit values over 255, in [0, 1] (measured here: ultrasound 0.12-0.67,
            H&E 0.31-0.98, 95% of it over 0.44); None where unknown.
    """

    array: np.ndarray
    path: Path
    spacing_mm: tuple[float, float] | None
    source_format: str
    source_mode: str
    full_shape: tuple[int, int] | None = None
    colourfulness: float | None = None
    spacing_note: str = ""
    frame: tuple[int, int] | None = None
    brightness: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.array.shape[0]), int(self.array.shape[1])




# ----------------------------------------------------------------------------------------------------
# Public API


def read_image(path: str | Path, mode: str = "gray", max_pixels: int = MAX_PIXELS) -> ImageRecord:
    """Read a PNG, JPEG, TIFF or DICOM image as ``uint8`` gray or RGB.

    The conversion rules (16-bit rescaling, DICOM windows, transparency, colour to gray) are given in
    the module docstring. A multi-page TIFF is refused rather than cut to its first page; a multi-frame
    DICOM (a cine loop) gives its first frame, and ``frame`` says so; the item ``<file>#frame=<k>``
    (:mod:`breastdx.data.dicom_frames`) gives its frame ``k`` (1-based).

    Args:
        path: The file (or a frame item). Its format is found from its first bytes, not its name.
        mode: ``"gray"`` or ``"rgb"``.
        max_pixels: Largest accepted width x height, checked from the header before decoding.

    Returns:
        An :class:`ImageRecord`.

    Shape:
        ``array``: ``(H, W)`` for ``mode="gray"``, ``(H, W, 3)`` for ``mode="rgb"``, dtype ``uint8``.

    Raises:
        ValueError: If ``mode`` is not ``"gray"`` or ``"rgb"``.
        ImageReadError: If the file is missing or empty, is not a PNG, JPEG, TIFF or DICOM image, is
            truncated or corrupt, is larger than ``max_pixels``, has several pages (TIFF), or stores pixels in
            a layout breastdx does not convert, or a frame item names a frame the file does not hold. The message
            names the file and quotes no value of a DICOM header (patient data stays private: the REST service
            answers it to the client); pydicom's warnings and log records, which do, are withheld while a DICOM file
            is read (:func:`breastdx.data.dicom_pixels.withhold_pydicom`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    from breastdx.data.dicom_frames import frame_item, frame_zero
    from breastdx.data.array_images import (ArrayInputError, array_item, expand_array_file, is_array_input,
                                            read_array_item, source_format)

    try:
        if array_item(path) is not None:  # one image of an array file (:func:`breastdx.data.image_files.list_images`)
            image, stored = read_array_item(path, mode, max_pixels)
            # colour and brightness measured as for a file, so that a grey .h5 given to an H&E model is out of scope
            chroma = _chroma(image) if image.ndim == 3 else (0.0 if stored == "L" else None)
            return ImageRecord(image, Path(path), None, source_format(path), stored, colourfulness=chroma,
                               brightness=_brightness(image))
        if is_array_input(path):  # a whole .npz or .h5: say what is wrong with it, or how to read it
            n = len(expand_array_file(path))
            raise ImageReadError(f"{path}: an array file of {n} images, not one image; list_images (and predict) "
                                 f"read each of them.")
    except ArrayInputError as e:
        raise ImageReadError(str(e)) from None
    item, frame = Path(path), None
    if frame_zero(path):
        raise ImageReadError(f"{path}: frames are numbered from 1 (#frame=1 is the first), not from 0.")
    chosen = frame_item(path)
    if chosen is not None:
        path, frame = chosen
    path = Path(path)
    dec = _decode(path, str(path), max_pixels, frame=frame)
    if frame is not None and dec.frame is None:
        raise ImageReadError(f"{item}: frame {frame} asked, but {path} holds a single image, not a cine loop.")
    path = item
    array = _to_uint8(dec, mode, path)
    return ImageRecord(array, path, dec.spacing_mm, dec.fmt, dec.mode, colourfulness=_colourfulness(dec),
                       spacing_note=dec.spacing_note, frame=dec.frame, brightness=_brightness(array))


def read_image_bytes(data: bytes, name: str, mode: str = "gray", max_pixels: int = MAX_PIXELS,
                     max_side: int | None = None, frame: int | None = None) -> ImageRecord:
    """:func:`read_image` for an image held in memory (an upload): decoded from the bytes, never written to disk.

    With ``max_side``, an image whose longer side is over it is decoded reduced, by the smallest integer
    factor that brings it to at most ``max_side`` (box average; a JPEG is decoded at 1/2, 1/4 or 1/8 scale
    first, PIL's ``draft``), so that a 35 KB PNG of 6000 x 6000 pixels costs the memory of the small image
    after its decoder's own buffer, not that of every full-size copy. ``full_shape`` then holds the stored
    size and ``spacing_mm`` the spacing of the reduced pixels.

    Args:
        data: The file's bytes. Its format is found from its first bytes, not its name.
        name: A name for messages and for ``ImageRecord.path`` (the client's file name).
        mode: ``"gray"`` or ``"rgb"``.
        max_pixels: Largest accepted width x height, checked from the header before decoding.
        max_side: Longest side wanted, in pixels (>= 1), or None for the full size.
        frame: The frame of a multi-frame DICOM to read (1-based), or None for the first.

    Raises:
        ValueError: If ``mode`` is not ``"gray"`` or ``"rgb"``.
        ImageReadError: As :func:`read_image`; the message names ``name``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    dec = _decode(bytes(data), name, max_pixels, max_side, frame=frame)
    if frame is not None and dec.frame is None:
        raise ImageReadError(f"{name}: frame {frame} asked, but it holds a single image, not a cine loop.")
    array = _to_uint8(dec, mode, Path(name))
    if dec.full_shape is None and max_side and max(array.shape[:2]) > max_side:  # DICOM, palette, 1-bit
        full = array.shape[:2]
        array = _reduce_uint8(array, -(-max(full) // max_side))
        dec = _reduced_meta(dec, full, array.shape[:2])
    return ImageRecord(array, Path(name), dec.spacing_mm, dec.fmt, dec.mode, dec.full_shape, _colourfulness(dec),
                       dec.spacing_note, dec.frame, _brightness(array))


def read_mask(path: str | Path, expected_shape: tuple[int, int] | None = None,
              max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a binary mask: foreground is any colour channel > 0.

    1-bit, 8- or 16-bit gray, palette, RGB and RGBA masks are accepted. With an alpha channel the colour
    channels decide; the alpha channel is used only when all colour values are 0 (see the module
    docstring for why: BUSI's RGBA masks have alpha 255 everywhere).

    Args:
        path: The mask file (any format :func:`read_image` reads).
        expected_shape: ``(H, W)`` the mask must have (its image's size), or None.
        max_pixels: Largest accepted width x height.

    Returns:
        Boolean array of shape ``(H, W)``, True on the foreground.

    Raises:
        ImageReadError: For the reasons :func:`read_image` gives, or when the mask's ``(H, W)`` differs
            from ``expected_shape`` (the message gives both sizes and the file).
    """
    path = Path(path)
    dec = _decode(path, str(path), max_pixels)
    v = dec.values
    if v.ndim == 2:
        fg = v > 0
    else:
        colour = v[..., :-1] if dec.alpha else v
        fg = (colour > 0).any(axis=-1)
        if dec.alpha and not fg.any():
            fg = v[..., -1] > 0
    if expected_shape is not None and tuple(fg.shape) != tuple(expected_shape):
        raise ImageReadError(
            f"{path}: mask is {fg.shape[0]}x{fg.shape[1]} (HxW) but its image is "
            f"{expected_shape[0]}x{expected_shape[1]}; a mask must have the size of its image."
        )
    return fg


def read_mask_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A mask file's 8-bit colour, uint8 ``(H, W, 3)``, read as :func:`read_image` reads RGB except transparency:
    composited on black (a mask's background; ``read_image`` puts colour on white, the glass of a slide), and a mask
    drawn as transparency alone (every colour value 0) read from its alpha, as :func:`read_mask` reads it.

    Raises:
        ImageReadError: For the reasons :func:`read_image` gives.
    """
    from dataclasses import replace

    path = Path(path)
    dec = _decode(path, str(path), max_pixels)
    if dec.alpha and not dec.values[..., :-1].any():  # drawn as transparency: the opaque pixels are the lesion
        values = dec.values.copy()
        values[..., :-1] = 255
        dec = replace(dec, values=values)
    return _to_uint8(dec, "rgb", path, on_black=True)


def read_images(paths: Iterable[str | Path], mode: str = "gray",
                max_pixels: int = MAX_PIXELS) -> tuple[list[ImageRecord], list[tuple[Path, str]]]:
    """Read many images, going on past the ones that fail.

    Args:
        paths: Image files (e.g. from :func:`breastdx.data.image_files.list_images`).
        mode: ``"gray"`` or ``"rgb"``.
        max_pixels: Largest accepted width x height.

    Returns:
        ``(records, failures)``: the images read, in input order, and ``(path, reason)`` for every file
        that could not be read.

    Raises:
        ValueError: If ``mode`` is not ``"gray"`` or ``"rgb"``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    records: list[ImageRecord] = []
    failures: list[tuple[Path, str]] = []
    for p in paths:
        p = Path(p)
        try:
            records.append(read_image(p, mode=mode, max_pixels=max_pixels))
        except ImageReadError as err:
            logger.warning("skipped %s: %s", p, err)
            failures.append((p, str(err)))
    return records, failures


# ----------------------------------------------------------------------------------------------------
# Format detection


def sniff_format(path: Path) -> str | None:
    """The image format from the first bytes of ``path``: PNG, JPEG, TIFF, DICOM, or None if unknown."""
    with open(path, "rb") as f:
        return sniff_bytes(f.read(132))


def sniff_bytes(head: bytes) -> str | None:
    """The image format from a file's first 132 bytes (or more): PNG, JPEG, TIFF, DICOM, or None if unknown."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    return None


def _check_file(path: Path) -> str:
    if not path.exists():
        raise ImageReadError(f"{path}: no such file.")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a file (expected an image file, found a folder or device).")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes); expected a PNG, JPEG, TIFF or DICOM image.")
    fmt = sniff_format(path)
    if fmt is None:
        with open(path, "rb") as f:
            head = f.read(8)
        raise ImageReadError(not_an_image(str(path), head))
    return fmt


KNOWN_NOT_IMAGES = (
    (b"\x89HDF", "an HDF5 file: PatchCamelyon's (name ending in .h5) is read patch by patch by 'breastdx predict'"),
    (b"\x1f\x8b", "a gzip archive (PatchCamelyon ships its files as .h5.gz): decompress it first (gunzip)"),
    (b"PK\x03\x04", "a ZIP archive, or a NumPy .npz (MedMNIST's, name ending in .npz, is read image by image by "
                    "'breastdx predict'): unpack a ZIP first"),
    (b"\x93NUMPY", "a NumPy .npy array: save its images as PNG files, or as a MedMNIST-style .npz"),
    (b"%PDF", "a PDF document: export its images as PNG or JPEG"),
)
"""Signatures of files often uploaded in place of an image, and what to do with them."""


def not_an_image(label: str, head: bytes) -> str:
    """The message for bytes that are no image format breastdx reads, saying what they are where it can tell.

    The bytes themselves are not quoted: a text file sent as an image may begin with a patient's name or number.
    Text is called text; other bytes are shown as the hexadecimal of their first four (a format's magic number).

    Args:
        label: The file's name, as messages name it.
        head: The file's first bytes (8 or more are enough).
    """
    known = next((what for magic, what in KNOWN_NOT_IMAGES if head.startswith(magic)), None)
    sample = head[:8]
    if sample and all(32 <= b < 127 or b in b"\t\r\n" for b in sample.lstrip(b"\xef\xbb\xbf")):
        first = "its first bytes are text (a CSV, JSON or other text file?)"
    else:
        first = f"its first bytes (hexadecimal {sample[:4].hex(' ')}) are not those of a PNG, JPEG, TIFF or DICOM file"
    return (f"{label}: not an image: {first}; breastdx reads PNG, JPEG, TIFF and DICOM (DICOM needs the 'DICM' marker "
            f"at byte 128), whatever its name ends with" + (f"; they are those of {known}." if known else "."))


def _check_bytes(data: bytes, label: str) -> str:
    if not data:
        raise ImageReadError(f"{label}: empty (0 bytes); expected a PNG, JPEG, TIFF or DICOM image.")
    fmt = sniff_bytes(data[:132])
    if fmt is None:
        raise ImageReadError(not_an_image(label, data[:8]))
    return fmt


def _decode(src: Path | bytes, label: str, max_pixels: int, max_side: int | None = None,
            frame: int | None = None) -> _Decoded:
    """Decode a file (``src`` a path) or an upload held in memory (``src`` its bytes); ``label`` names it in
    messages. Bytes are never written to disk. Pillow formats are reduced to ``max_side`` while decoded; ``frame``
    (1-based) chooses a DICOM cine loop's frame, and is refused for another format."""
    fmt = _check_file(src) if isinstance(src, Path) else _check_bytes(src, label)
    if fmt == "DICOM":
        from breastdx.data.dicom_pixels import decode_dicom

        return decode_dicom(src, label, max_pixels, frame=frame)
    if frame is not None:
        raise ImageReadError(f"{label}#frame={frame}: frames are read from multi-frame DICOM files; this is {fmt}.")
    return _decode_pillow(src, label, fmt, max_pixels, max_side)


def _reduce_uint8(array: np.ndarray, factor: int) -> np.ndarray:
    """``uint8`` gray or RGB ``array`` reduced by the integer ``factor`` (box average, PIL's ``reduce``)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(array)).reduce(int(factor)))


def _reduced_meta(dec: _Decoded, full: tuple[int, ...], small: tuple[int, ...]) -> _Decoded:
    """``dec`` saying that its pixels are a reduction of an image of ``full`` ``(H, W)`` to ``small``."""
    from dataclasses import replace

    spacing = dec.spacing_mm
    if spacing is not None:
        spacing = (spacing[0] * full[0] / small[0], spacing[1] * full[1] / small[1])
    return replace(dec, spacing_mm=spacing, full_shape=(int(full[0]), int(full[1])))


# ----------------------------------------------------------------------------------------------------
# Pillow (PNG, JPEG, TIFF)


def _decode_pillow(src: Path | bytes, label: str, fmt: str, max_pixels: int, max_side: int | None = None) -> _Decoded:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(_open(src))
    except Image.DecompressionBombError as err:  # over twice Pillow's own limit, which it checks first
        size = re.search(r"Image size \((\d+) pixels\)", str(err))
        if size:
            raise ImageReadError(f"{label}: image is {int(size[1]):,} pixels, over the limit of {max_pixels:,} (a "
                                 f"guard against decompression bombs); refusing to decode it.") from None
        raise ImageReadError(f"{label}: refused by Pillow's decompression-bomb guard: {err}") from None
    except Exception as err:  # Pillow raises UnidentifiedImageError, SyntaxError, OSError, ValueError...
        said = re.sub(r" ?<_io\.\w+ object at 0x[0-9a-fA-F]+>", "", str(err))  # the in-memory file, not a name
        raise ImageReadError(f"{label}: cannot read the {fmt} header ({type(err).__name__}: {said}); the file is "
                             f"corrupt, or stores pixels in a layout Pillow does not read (such as float or "
                             f"several-sample colour); expected 1-bit, 8-bit gray or colour, palette, or 16/32-bit "
                             f"integer or 32-bit float gray.") from None
    with im:
        width, height = im.size
        _check_size(label, width, height, max_pixels)
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and fmt == "TIFF":
            raise ImageReadError(f"{label}: TIFF with {frames} pages; expected a single 2-D image.")
        factor = -(-max(width, height) // max_side) if max_side else 1
        if factor > 1 and fmt == "JPEG":  # the decoder itself scales by 1/2, 1/4 or 1/8, to at least this size
            im.draft(im.mode, (-(-width // factor), -(-height // factor)))
        try:
            im.load()  # forces the full decode: truncated or corrupt data fail here
        except Exception as err:
            raise ImageReadError(f"{label}: truncated or corrupt {fmt} data ({type(err).__name__}: {err}); "
                                 f"the file could not be decoded completely.") from None
        mode = im.mode
        try:
            upright = _exif_upright(im, label)
            if upright is not im:  # stored rotated or mirrored: the image as every viewer shows it
                height, width = (width, height) if upright.size != im.size else (height, width)
            dec = _from_pil(_reduce_pil(upright, max_side), label, fmt, mode)
            return dec if dec.values.shape[:2] == (height, width) else _reduced_meta(dec, (height, width),
                                                                                        dec.values.shape[:2])
        except ImageReadError:
            raise
        except Exception as err:
            raise ImageReadError(f"{label}: cannot convert {fmt} pixels of mode {mode!r} "
                                 f"({type(err).__name__}: {err}).") from None


def _exif_upright(im: Any, label: str) -> Any:
    """``im`` turned upright by its EXIF Orientation tag (0x0112, values 2-8: mirrored and/or rotated, as phones and
    some exporters store JPEGs), as viewers show it; ``im`` itself when the tag is absent or 1. Without this, a
    photo of a screen or a rotated export would reach the model sideways."""
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - a malformed EXIF block: the pixels as stored
        return im
    if orientation in (None, 1):
        return im
    logger.debug("%s: turned upright by its EXIF orientation %s", label, orientation)
    return ImageOps.exif_transpose(im)  # a transposed copy (None only with in_place=True)


def _reduce_pil(im: Any, max_side: int | None) -> Any:
    """``im`` reduced by the smallest integer factor that brings its longer side to at most ``max_side`` (box
    average), when its mode averages meaningfully; 16-bit gray goes through ``I``; others are left whole."""
    factor = -(-max(im.size) // max_side) if max_side else 1
    if factor <= 1 or im.mode not in _REDUCIBLE and not im.mode.startswith("I;16"):
        return im
    return (im.convert("I") if im.mode.startswith("I;16") else im).reduce(factor)


def _from_pil(im, label: str, fmt: str, mode: str) -> _Decoded:
    if mode in _PIL_WIDE:
        if mode.startswith("I;16"):
            values = np.asarray(im).astype(np.float64)
        else:
            values = np.asarray(im, dtype=np.float64)
        return _Decoded(values, fmt, mode, wide=True, alpha=False)
    if mode not in _PIL_8BIT:
        raise ImageReadError(
            f"{label}: unsupported pixel mode {mode!r} in this {fmt} file; expected 1-bit, 8-bit gray or "
            f"colour, palette, or 16/32-bit gray ({', '.join(sorted(_PIL_8BIT | _PIL_WIDE))})."
        )
    if mode == "1":
        return _Decoded(np.asarray(im, dtype=np.uint8) * np.uint8(255), fmt, mode, wide=False, alpha=False)
    if mode in ("L", "RGB") and "transparency" not in im.info:  # with it: a colour key (PNG tRNS), made alpha
        return _Decoded(np.asarray(im, dtype=np.uint8), fmt, mode, wide=False, alpha=False)
    if mode in ("LA", "La", "PA") or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        target = "LA" if mode in ("LA", "La", "L") else "RGBA"
        return _Decoded(np.asarray(im.convert(target), dtype=np.uint8), fmt, mode, wide=False, alpha=True)
    if mode in ("RGBA", "RGBa"):
        return _Decoded(np.asarray(im.convert("RGBA"), dtype=np.uint8), fmt, mode, wide=False, alpha=True)
    # P without transparency, CMYK, YCbCr, LAB, HSV, RGBX: Pillow converts to RGB.
    return _Decoded(np.asarray(im.convert("RGB"), dtype=np.uint8), fmt, mode, wide=False, alpha=False)


# ----------------------------------------------------------------------------------------------------
# Conversion to uint8 gray / RGB


def rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Linear min-max rescaling of an image to ``uint8``: ``round(255 * (v - min) / (max - min))``.

    A constant image becomes all 0. NaN values become 0.

    Args:
        values: Any real array.

    Returns:
        ``uint8`` array of the same shape.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(v.shape, dtype=np.uint8)
    lo, hi = float(v[finite].min()), float(v[finite].max())
    if hi <= lo:
        return np.zeros(v.shape, dtype=np.uint8)
    out = np.where(finite, (v - lo) / (hi - lo) * 255.0, 0.0)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _apply_window(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``values`` through the display range ``(low, high)``, ``low`` to 0 and ``high`` to 255, rounded and clipped
    (a LINEAR_EXACT window, PS3.3 C.11.2.1.3.2): the one normalisation of a DICOM VOI LUT's, window's or stretch's
    output range (:func:`breastdx.data.dicom_pixels.grey_display`)."""
    low, high = window
    y = (values - low) / (high - low) * 255.0
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def _colourfulness(dec: _Decoded) -> float:
    v = dec.values
    if v.ndim != 3 or v.shape[-1] < 3 or dec.wide:
        return 0.0
    return _chroma(v)


def _chroma(v: np.ndarray) -> float:
    """Mean of ``max(R, G, B) - min(R, G, B)`` of 8-bit colours ``(H, W, >=3)`` over 255."""
    step = max(1, int(np.sqrt(v.shape[0] * v.shape[1] / 40_000)))  # a grid of about 40,000 pixels is enough
    r, g, b = (v[::step, ::step, c] for c in range(3))
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)  # uint8: max >= min
    return round(float(chroma.mean()) / 255.0, 4)


def _brightness(array: np.ndarray) -> float:
    """Mean of an 8-bit image over 255 on a grid of about 40,000 pixels."""
    step = max(1, int(np.sqrt(array.shape[0] * array.shape[1] / 40_000)))
    return round(float(array[::step, ::step].mean()) / 255.0, 4)


def _to_uint8(dec: _Decoded, mode: str, path: Path, on_black: bool | None = None) -> np.ndarray:
    v = dec.values
    if dec.alpha:  # composite on black (gray: ultrasound; masks) or white (colour: H&E on glass)
        colour = v[..., :-1].astype(np.float64)
        a = v[..., -1:].astype(np.float64) / 255.0
        white = mode == "rgb" if on_black is None else not on_black
        v = np.round(colour * a + (255.0 * (1.0 - a) if white else 0.0)).astype(np.uint8)
        if v.shape[-1] == 1:
            v = v[..., 0]
    elif dec.wide:
        if dec.window is not None:
            v = _apply_window(v, dec.window)
        else:
            v = rescale_to_uint8(v)
    v = np.asarray(v, dtype=np.uint8)
    if dec.invert:
        v = 255 - v
    if v.ndim == 3 and v.shape[-1] != 3:
        raise ImageReadError(f"{path}: decoded to shape {v.shape}; expected (H, W) or (H, W, 3).")
    if mode == "gray":
        if v.ndim == 3:
            from PIL import Image

            v = np.asarray(Image.fromarray(np.ascontiguousarray(v)).convert("L"), dtype=np.uint8)
        return np.ascontiguousarray(v)
    if v.ndim == 2:
        v = np.repeat(v[..., None], 3, axis=-1)
    return np.ascontiguousarray(v)
