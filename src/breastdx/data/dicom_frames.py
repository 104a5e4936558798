"""Frames of a multi-frame DICOM (an ultrasound cine loop) as items to predict: ``<file>#frame=<k>``.

A cine loop holds many frames of one examination. ``breastdx predict --frame`` chooses which are read:
``first`` (the default: frame 1, and the ``frame`` column says "1 of N"), a frame number ``k`` (1-based), or
``all`` (one item, and one row of ``predictions.csv``, per frame). A chosen frame is named as an item
``<file>#frame=<k>``, which :func:`breastdx.data.images.read_image` reads (decoding that frame alone), as
MedMNIST's ``<file>.npz#<split>_images[<i>]`` items are read. Single-frame files and other formats are
left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

_ITEM = re.compile(r"^(?P<file>.+)#frame=(?P<frame>[0-9]+)$")

FRAME_CHOICES = ("first", "all")
"""The words ``--frame`` takes besides a frame number."""


def frame_item(path: str | Path) -> tuple[Path, int] | None:
    """``(file, frame)`` of an item ``<file>#frame=<k>`` (k >= 1; a file of that literal name is itself), or None."""
    if Path(path).exists():
        return None
    m = _ITEM.match(str(path))
    if m is None or int(m["frame"]) < 1:
        return None
    return Path(m["file"]), int(m["frame"])


def frame_zero(path: str | Path) -> bool:
    """True for an item ``<file>#frame=0`` of a file that exists (frames are numbered from 1): not a missing file."""
    m = _ITEM.match(str(path))
    return m is not None and int(m["frame"]) == 0 and not Path(path).exists() and Path(m["file"]).is_file()


def frame_name(path: str | Path, frame: int) -> Path:
    """The item that names frame ``frame`` (1-based) of ``path``."""
    return Path(f"{path}#frame={int(frame)}")


def count_frames(path: str | Path) -> int:
    """NumberOfFrames of a DICOM file, read from its header alone; 1 for a single frame, another format or a file
    that cannot be read (the reader reports that file). pydicom's warnings and log records, which quote header
    values, are withheld (:func:`breastdx.data.dicom_pixels.withhold_pydicom`); nothing is raised."""
    try:
        with open(path, "rb") as f:
            if f.read(132)[128:132] != b"DICM":  # the DICOM preamble (PS3.10 7.1), as images.sniff_format reads it
                return 1
        import pydicom

        from breastdx.data.dicom_pixels import withhold_pydicom

        with withhold_pydicom():
            header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["NumberOfFrames"])
            return max(int(header.get("NumberOfFrames", 1) or 1), 1)
    except Exception:  # noqa: BLE001 - unreadable here: read_image says why, for this file
        return 1


def check_frame_option(value: str) -> str:
    """``first``, ``all`` or a frame number >= 1, as given.

    Raises:
        ValueError: For anything else.
    """
    text = str(value).strip().lower()
    if text in FRAME_CHOICES or (text.isdigit() and int(text) >= 1):
        return text
    raise ValueError(f"--frame takes 'first', 'all' or a frame number (1, 2, ...), not {value!r}.")


def expand_frames(paths: Sequence[str | Path], frame: str) -> list[Path]:
    """The items to read for ``--frame frame``: each multi-frame DICOM of ``paths`` becomes ``<file>#frame=<k>``
    for the chosen frame (a number; one past the loop's end is reported by the reader) or for every frame
    (``all``); ``first`` and every other file leave the path as it is. The order of ``paths`` is kept.

    Raises:
        ValueError: As :func:`check_frame_option`.
    """
    frame = check_frame_option(frame)
    if frame == "first":
        return [Path(p) for p in paths]
    out: list[Path] = []
    for p in paths:
        n = count_frames(p) if Path(p).is_file() else 1
        if n == 1:
            out.append(Path(p))
        elif frame == "all":
            out.extend(frame_name(p, k) for k in range(1, n + 1))
        else:
            out.append(frame_name(p, int(frame)))
    return out
