"""The lesion masks that ``breastdx explain`` finds beside its input images (:func:`breastdx.pipeline.verbs.explain`).

The rule is BUSI's naming (:mod:`breastdx.data.busi`), with any image suffix: the masks of ``<folder>/<stem>.<ext>``
are the files ``<stem>_mask.<e>`` and ``<stem>_mask_<k>.<e>`` in the same folder, ``<e>`` any suffix that
:func:`breastdx.data.image_files.list_images` collects (:data:`breastdx.data.image_files.IMAGE_SUFFIXES`; ``_mask``
and the suffix in any case), so ``scan.jpg`` finds ``scan_mask.png``. Where one mask name is there with several
suffixes, the image's own suffix is taken, else the first of ``IMAGE_SUFFIXES``. The lesion is the union of the masks
(``benign (100)_mask.png`` and ``benign (100)_mask_1.png``: two lesions). An image of an array file or a frame of a cine
loop (``<file>.npz#test_images[17]``, ``<file>#frame=3``) has no mask. Each folder is listed once; the file names
are the ones it holds, so an image whose name is too long to add ``_mask`` to simply has none.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from breastdx.data.image_files import IMAGE_SUFFIXES, mask_of


class LesionMasks:
    """Find and read the lesion masks beside input images (see the module docstring for the rule)."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, dict[int, dict[str, Path]]]] = {}

    def files(self, image: str | Path) -> list[Path]:
        """The mask files of ``image``: ``_mask`` first, then ``_mask_<k>`` by ``k``; none when there are none."""
        from breastdx.data.array_images import array_item
        from breastdx.data.dicom_frames import frame_item

        image = Path(image)
        if array_item(image) is not None or frame_item(image) is not None:
            return []
        if image.parent not in self._folders:
            self._folders[image.parent] = _index(image.parent)
        found = self._folders[image.parent].get(image.stem, {})
        own = image.suffix.lower()
        return [by_ext[own] if own in by_ext else next(by_ext[e] for e in IMAGE_SUFFIXES if e in by_ext)
                for _, by_ext in sorted(found.items())]

    def read(self, image: str | Path, shape: tuple[int, int]) -> tuple[np.ndarray | None, list[tuple[str, str]]]:
        """The union of ``image``'s masks, bool ``(H, W)`` = ``shape`` (None when it has none, or they are empty),
        and ``(file, reason)`` for each mask that could not be used (unreadable, or not of the image's ``shape``);
        the others still count. Nothing is raised for a mask file."""
        from breastdx.data.images import read_mask

        mask, problems = None, []
        for file in self.files(image):
            try:
                m = read_mask(file, expected_shape=shape)
            except (ValueError, OSError) as e:  # ImageReadError is a ValueError
                problems.append((str(file), f"mask not used: {e}"))
                continue
            mask = m if mask is None else mask | m
        return (mask if mask is not None and mask.any() else None), problems


def _index(folder: Path) -> dict[str, dict[int, dict[str, Path]]]:
    """``{image stem: {k: {suffix (lower case): mask file}}}`` of a folder's mask files, ``k`` -1 for ``_mask``."""
    index: dict[str, dict[int, dict[str, Path]]] = {}
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.is_file())
    except OSError:  # a folder that cannot be listed: no masks
        return index
    for name in names:
        ext, found = Path(name).suffix.lower(), mask_of(name)
        if found is None or not found[0] or ext not in IMAGE_SUFFIXES:
            continue
        stem, k = found
        index.setdefault(stem, {}).setdefault(-1 if k is None else k, {}).setdefault(ext, folder / name)
    return index
