"""Which files are inputs: image files collected from files and folders (:func:`list_images`), a folder's visible
entries, BUSI's mask names. Reading them is :mod:`breastdx.data.images`'s.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

from breastdx.data.images import sniff_format

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
"""File name endings :func:`list_images` collects from folders (compared without case)."""

DICOMDIR = "DICOMDIR"
"""The name of a DICOM CD's or USB stick's index file (PS3.10 8.6): DICOM without an image, left out of folders."""

RUN_OUTPUT_FILES = ("predictions.csv", "explanations.csv", "metrics.json", "versions.json")
"""Files that mark a folder as one breastdx wrote (a predict, explain, evaluate or training run): found inside an
input folder, such a folder's images (overlays, masks, Grad-CAM maps) are not inputs, and :func:`list_images`
leaves it out, saying so."""

_MASK_NAME = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)


def mask_of(path: str | Path) -> tuple[str, int | None] | None:
    """The image stem and mask number of a lesion mask's file name, by BUSI's convention: ``x_mask.png`` gives
    ``("x", None)``, ``x_mask_2.png`` ``("x", 2)`` (``_mask`` in any case); None for a name that is not a mask's."""
    stem = Path(path).stem
    m = _MASK_NAME.search(stem)
    if m is None:
        return None
    return stem[:m.start()], None if m.group(1) is None else int(m.group(1)[1:])


def is_mask_name(path: str | Path) -> bool:
    """True when the file name (without suffix) ends in ``_mask`` or ``_mask_<k>`` (BUSI's convention)."""
    return mask_of(path) is not None


def list_images(inputs: Sequence[str | Path], exclude_masks: bool = True) -> list[Path]:
    """Collect image files from files and folders.

    A MedMNIST ``.npz`` file (``breastmnist.npz``, or ``breastmnist.npz#test`` for one split) gives one item per
    image, ``<file>.npz#<split>_images[<index>]``, and a PatchCamelyon ``.h5`` file one per patch,
    ``<file>.h5#x[<index>]``; :func:`breastdx.data.images.read_image` reads them (:mod:`breastdx.data.array_images`).
    Such files found in a folder are expanded too (one that holds no images, such as PCam's ``_y.h5`` labels, is
    named among the files not read). Folders are searched recursively for names ending in one of
    :data:`IMAGE_SUFFIXES` (any case), and for DICOM files named without an extension or with a numeric one
    (``IM00001``, ``1.2.840.10008.5.1``: the usual PACS export names), recognised by their preamble ('DICM' at
    byte 128);
    hidden files and folders (names starting with ``.``) are skipped, as is a ``DICOMDIR`` (the index of a DICOM CD,
    which holds no image; the log says so), and a sub-folder that breastdx wrote (it holds one of
    :data:`RUN_OUTPUT_FILES`: an earlier run's overlays are not new images; a warning names it). A link to no file
    found in a folder is named in a warning too. Other files found in folders are not read,
    and a warning names them (the first three and a count), so that a folder of, say, ``.bmp`` images is not
    passed over in silence. Files named in ``inputs`` are kept whatever their suffix (and even when missing), so
    that :func:`breastdx.data.images.read_images` reports them.

    Args:
        inputs: Files and folders.
        exclude_masks: Leave out ``*_mask.*`` and ``*_mask_<k>.*`` files (also when named directly, so
            that a shell glob such as ``benign/*.png`` gives the images only).

    Returns:
        Unique paths, sorted (a cine loop's frame items, :mod:`breastdx.data.dicom_frames`, by frame number); a
        file named twice (by another path, through a link, or in a folder also given) is listed once.
    """
    from breastdx.data.array_images import ArrayInputError, expand_array_file, is_array_input

    found: set[Path] = set()
    not_read: list[Path] = []
    indexes: list[Path] = []
    outputs: set[Path] = set()  # breastdx's own output folders met inside input folders
    broken: list[Path] = []
    for item in inputs:
        p = Path(item)
        if is_array_input(item) and not p.is_dir():  # a .npz or .h5: one item per image (a bad file: one item)
            try:
                found.update(expand_array_file(item))
            except ArrayInputError:
                found.add(p)
            continue
        if p.is_dir():
            entries = [f for f in p.rglob("*") if not any(part.startswith(".") for part in f.relative_to(p).parts)]
            runs = {f.parent for f in entries if f.name in RUN_OUTPUT_FILES and f.parent != p and f.is_file()}
            outputs.update(runs)
            for f in entries:
                if runs and any(parent in runs for parent in f.parents):
                    continue
                if f.is_symlink() and not f.exists():  # a link to nothing: not silently passed over
                    broken.append(f)
                    continue
                if f.name.upper() == DICOMDIR and f.is_file():  # a DICOM CD's index: its images are in the folder
                    indexes.append(f)
                    continue
                if f.is_file() and (f.suffix.lower() in IMAGE_SUFFIXES or _is_unnamed_dicom(f)):
                    found.add(f)
                elif f.is_file() and is_array_input(f):  # a .npz or .h5 of images: each of them
                    try:
                        found.update(expand_array_file(f))
                    except ArrayInputError:  # a PCam labels file (_y.h5), an .npz of other arrays
                        not_read.append(f)
                elif f.is_file():
                    not_read.append(f)
        else:
            found.add(p)
    if not_read:
        not_read.sort()
        more = f" and {len(not_read) - 3} more" if len(not_read) > 3 else ""
        logger.warning("%d file(s) in the input folders were not read, as their names do not end in an image "
                       "suffix (%s), they are not DICOM, and they are no array file of images (.npz, .h5): %s%s. "
                       "Name a file directly to have it checked.",
                       len(not_read), ", ".join(IMAGE_SUFFIXES), ", ".join(str(f) for f in not_read[:3]), more)
    if outputs:
        names = sorted(str(d) for d in outputs)
        logger.warning("%d folder(s) inside the input folders hold breastdx's own output (%s: an earlier predict, "
                       "explain, evaluate or training run), and their images are not read as inputs: %s%s. Name "
                       "such a folder directly to read it.", len(names), ", ".join(RUN_OUTPUT_FILES),
                       ", ".join(names[:3]), f" and {len(names) - 3} more" if len(names) > 3 else "")
    if broken:
        broken.sort()
        logger.warning("%d link(s) in the input folders point to no file and are not read: %s%s.", len(broken),
                       ", ".join(str(f) for f in broken[:3]), f" and {len(broken) - 3} more" if len(broken) > 3 else "")
    if indexes:
        logger.info("%s: a DICOM media index (DICOMDIR), which holds no image, is not read; the images it lists are "
                    "read from its folder.", ", ".join(str(f) for f in sorted(indexes)))
    if exclude_masks:
        found = {f for f in found if not is_mask_name(f)}
    unique: dict[str, Path] = {}  # one file named twice (another spelling, a link, its folder too): read once
    for f in sorted(found, key=_item_order):
        unique.setdefault(_same_file_key(f), f)
    if len(unique) < len(found):
        logger.info("%d input(s) name a file already given by another path (a link, '..', or its folder given "
                    "too); each file is read once.", len(found) - len(unique))
    return list(unique.values())


def _same_file_key(path: Path) -> str:
    """The file an input names, links and ``..`` resolved, with its ``#frame=<k>`` or ``#<key>[<index>]`` kept."""
    from breastdx.data.array_images import array_item
    from breastdx.data.dicom_frames import frame_item

    text, fragment = str(path), ""
    if frame_item(path) is not None or array_item(path) is not None:
        text, fragment = text[:text.rindex("#")], text[text.rindex("#"):]
    try:
        return str(Path(text).resolve()) + fragment
    except (OSError, RuntimeError):  # a link loop: the path as written
        return str(Path(text).absolute()) + fragment


def _item_order(path: Path) -> tuple[Path, int]:
    """Sort key of :func:`list_images`: by path, a cine loop's frame items (``<file>#frame=<k>``) by frame number."""
    from breastdx.data.dicom_frames import frame_item

    chosen = frame_item(path)
    return (path, 0) if chosen is None else (chosen[0], chosen[1])


def _is_unnamed_dicom(path: Path) -> bool:
    """True for a DICOM file whose name has no extension, or a numeric one (a PACS export), by its preamble."""
    if path.suffix and not path.suffix[1:].isdigit():
        return False
    try:
        return sniff_format(path) == "DICOM"
    except OSError:
        return False


def visible_entries(folder: str | Path) -> list[Path]:
    """The files and folders in ``folder``, sorted, without hidden ones (names starting with ``.``).

    Raises:
        FileNotFoundError: If ``folder`` does not exist.
        NotADirectoryError: If it is a file.
    """
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))


def item_stem(path: str | Path) -> str:
    """The stem of an input's output files: the file's stem; ``<stem>_frame<k>`` for a cine loop's frame item
    (:mod:`breastdx.data.dicom_frames`); ``<stem>_<key>_<index>`` for an image of an array file
    (``breastmnist_test_images_000017``; :mod:`breastdx.data.array_images`)."""
    from breastdx.data.array_images import array_item
    from breastdx.data.dicom_frames import frame_item

    chosen, item = frame_item(path), array_item(path)
    if item is not None:
        return f"{item[0].stem}_{item[1]}_{item[2]:06d}"
    return Path(path).stem if chosen is None else f"{chosen[0].stem}_frame{chosen[1]}"


MAX_STEM_BYTES = 150
"""Longest output stem, in UTF-8 bytes: file names hold at most 255 bytes, and the longest suffix added to a stem
(``_gradcampp_malignant_papillary_carcinoma.png``, ``_<k>`` for a repeated stem) needs under 60."""


class OutputStems:
    """Distinct stems for the output files of a batch's inputs, so that none overwrites another's.

    The first input of a stem keeps it; a later one gets ``<stem>_2``, ``<stem>_3``, ... skipping any stem already
    given, so that ``a/x.png``, ``x_2.png``, ``b/x.png`` become ``x``, ``x_2``, ``x_3``. Stems that differ in case
    only (``a/Scan.png``, ``b/scan.png``) are the same file name on macOS and Windows, so they count as one. A stem
    over :data:`MAX_STEM_BYTES` (UTF-8) is cut to that length, so that with the suffixes an output file's name stays
    within the 255 bytes file systems allow (an input's own name may be that long).

    Example:
        >>> names = OutputStems()
        >>> [names.claim(s) for s in ("x", "x_2", "x")]
        ['x', 'x_2', 'x_3']
    """

    def __init__(self) -> None:
        self._given: set[str] = set()

    def claim(self, stem: str) -> str:
        """A stem not given before: ``stem`` itself (cut to :data:`MAX_STEM_BYTES`), else ``<stem>_<k>`` with the
        smallest free ``k >= 2``."""
        while len(stem.encode("utf-8", "surrogateescape")) > MAX_STEM_BYTES:
            stem = stem[:-1]
        name, k = stem, 1
        while name.casefold() in self._given:
            k += 1
            name = f"{stem}_{k}"
        self._given.add(name.casefold())
        return name
