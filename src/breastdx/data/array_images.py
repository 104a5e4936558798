"""Arrays of images as inputs: MedMNIST ``.npz`` files (``breastdx predict breastmnist breastmnist.npz``, every
split, or ``breastmnist.npz#test``, one split) and PatchCamelyon ``.h5`` files (``breastdx predict pcam
camelyonpatch_level_2_split_test_x.h5``).

A MedMNIST v2 file (Yang et al. 2023, Scientific Data 10:41, doi:10.1038/s41597-022-01721-8) holds
``train_images``, ``val_images`` and ``test_images`` arrays, uint8 ``(N, H, W)`` (grey) or ``(N, H, W, 3)``, beside
their labels; it is loaded once per file, without pickle. A PatchCamelyon file (Veeling et al. 2018,
arXiv:1806.03962; github.com/basveeling/pcam) holds one HDF5 dataset ``x``, uint8 ``(N, 96, 96, 3)``; it is read
one patch at a time (the test file alone is 0.9 GB of pixels), through one open handle per file.
:func:`expand_array_file` turns such an input into one item per image, named ``<file>#<key>[<index>]`` (index
zero-padded, so that names sort in array order); :func:`read_array_item` reads one, as
:func:`breastdx.data.images.read_image` reads a file (which it does for these names).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
"""MedMNIST's splits, in the order their images are listed."""

SUFFIXES = ("npz", "h5", "hdf5")
"""The array files read: MedMNIST's ``.npz``, PatchCamelyon's HDF5."""


GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of a gzip file (RFC 1952)."""

TRUNCATED_HDF5_HINT = ("It is shorter than its header says: an interrupted copy or download? Copy it again; for the "
                       "official PCam files, delete it and run `breastdx data download pcam` (the files already in "
                       "place are kept, unchecked).")
"""The one advice for an HDF5 file that HDF5 reports truncated (appended to the error naming the file, by this
module's reader and by :mod:`breastdx.data.pcam`'s)."""

HDF5_CHUNK_CACHE = 64 * 1024 * 1024
"""Bytes of decompressed HDF5 chunks kept per open file (h5py's default is 1 MiB): patches read one after the other
from a file compressed in chunks of many patches decompress each chunk once, not once per patch."""


class ArrayInputError(ValueError):
    """An array-file input that cannot be read; the message names the file (and the item)."""


_FILE = rf"(?P<file>.+\.(?:{'|'.join(SUFFIXES)}))"
_ITEM = re.compile(rf"^{_FILE}#(?P<key>[A-Za-z0-9_]+)\[(?P<index>\d+)\]$", re.IGNORECASE)
_INPUT = re.compile(rf"^{_FILE}(#(?P<part>.*))?$", re.IGNORECASE)


def is_array_input(item: str | Path) -> bool:
    """True for ``<file>.npz|.h5|.hdf5``, with or without ``#<anything>`` (an input to expand, whose fragment
    :func:`expand_array_file` checks), not for one item of it."""
    return bool(_INPUT.match(str(item))) and not _ITEM.match(str(item))


def array_item(path: str | Path) -> tuple[Path, str, int] | None:
    """``(file, array key, index)`` of an item name ``<file>#<key>[<index>]``, or None for another path."""
    m = _ITEM.match(str(path))
    return None if m is None else (Path(m["file"]), m["key"], int(m["index"]))


def _is_hdf5(file: Path) -> bool:
    return file.suffix.lower() in (".h5", ".hdf5")


@lru_cache(maxsize=4)
def _npz_arrays(file: str, stamp: float) -> dict[str, np.ndarray]:  # stamp: the file's mtime, so a new file reloads
    try:
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k.endswith("_images")}
    except (OSError, ValueError) as e:
        raise ArrayInputError(f"{file}: not a readable .npz file ({type(e).__name__}: {e}).") from None


@lru_cache(maxsize=4)
def _hdf5_datasets(file: str, stamp: float) -> dict[str, Any]:
    import h5py

    try:
        handle = h5py.File(file, "r", rdcc_nbytes=HDF5_CHUNK_CACHE)
    except OSError as e:
        with open(file, "rb") as f:
            gzipped = f.read(2) == GZIP_MAGIC
        hint = (" It is gzip-compressed (PatchCamelyon publishes its files as .h5.gz): decompress it first (gunzip)."
                if gzipped else f" {TRUNCATED_HDF5_HINT}" if "truncated" in str(e) else "")
        raise ArrayInputError(f"{file}: not a readable HDF5 file ({e}).{hint}") from None
    return {k: v for k, v in handle.items() if isinstance(v, h5py.Dataset) and _holds_images(v.dtype, v.shape)}


def _holds_images(dtype: Any, shape: tuple[int, ...]) -> bool:
    """uint8 ``(N, H, W)`` or ``(N, H, W, 3)`` with H, W > 1 (PatchCamelyon's labels are uint8 ``(N, 1, 1, 1)``)."""
    return (dtype == np.uint8 and len(shape) in (3, 4) and shape[1] > 1 and shape[2] > 1
            and (len(shape) == 3 or shape[3] == 3))


def _load(file: Path) -> dict[str, Any]:
    """The image arrays of a file: NumPy arrays (``.npz``) or lazily read HDF5 datasets."""
    if not file.is_file():
        raise ArrayInputError(f"{file}: no such file.")
    if _is_hdf5(file):
        arrays = _hdf5_datasets(str(file), file.stat().st_mtime)
        if not arrays:
            raise ArrayInputError(f"{file}: no image dataset (uint8, N x H x W or N x H x W x 3); expected a "
                                  f"PatchCamelyon '_x.h5' file, whose dataset 'x' holds the patches (the '_y.h5' file "
                                  f"holds labels).")
        return arrays
    arrays = _npz_arrays(str(file), file.stat().st_mtime)
    if not arrays:
        raise ArrayInputError(f"{file}: no '<split>_images' array; expected a MedMNIST .npz file (train_images, "
                              f"val_images, test_images).")
    return arrays


def expand_array_file(item: str | Path) -> list[Path]:
    """One item name per image of an array-file input: every image array of it, or the one after ``#`` (a
    MedMNIST split, ``breastmnist.npz#test``; an HDF5 dataset, ``..._x.h5#x``).

    Raises:
        ArrayInputError: If the file is missing, unreadable or holds no image array, or the fragment names no
            array of it; the message names the file and what it has.
    """
    m = _INPUT.match(str(item))
    if m is None:
        raise ArrayInputError(f"{item}: expected <file>.npz, <file>.npz#<split> or <file>.h5.")
    file, part = Path(m["file"]), m["part"]
    hdf5 = _is_hdf5(file)
    if part is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*" if hdf5 else r"[A-Za-z]+", part):
        what = "a dataset, as x" if hdf5 else f"a split ({', '.join(SPLITS)})"
        example = f"{file.name}#x[000017]" if hdf5 else f"{file.name}#test_images[000017]"
        raise ArrayInputError(f"{item}: after '#' expected {what} or one image, as {example}; got {part!r}.")
    arrays = _load(file)
    if hdf5:
        keys = list(arrays) if part is None else [part] if part in arrays else []
        if not keys:
            raise ArrayInputError(f"{file}: no image dataset {part!r}; it has {', '.join(arrays)}.")
    else:
        have = [k[: -len("_images")] for k in arrays]
        keys = [f"{s}_images" for s in (SPLITS if part is None else (part,)) if f"{s}_images" in arrays]
        if part is not None and not keys:
            raise ArrayInputError(f"{file}: no split {part!r}; it has {', '.join(have)}.")
        if part is None:
            keys += [k for k in arrays if k not in keys]
    return [Path(f"{file}#{k}[{i:06d}]") for k in keys for i in range(len(arrays[k]))]


def read_array_item(path: str | Path, mode: str = "gray", max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """One image of an array file (:func:`breastdx.data.images.read_image` wraps it in an ``ImageRecord``).

    Args:
        path: ``<file>#<key>[<index>]`` (from :func:`expand_array_file`).
        mode: ``"gray"`` (colour arrays become luminance 0.299 R + 0.587 G + 0.114 B, by Pillow's ``convert("L")``
            as :func:`breastdx.data.images.read_image` converts a colour file) or ``"rgb"`` (grey arrays are
            repeated over three channels).
        max_pixels: Largest accepted height x width, checked from the array's shape before the image is read (an
            HDF5 patch is read alone), as :func:`breastdx.data.images.read_image` checks a file's header; None: no
            limit.

    Returns:
        ``(image, stored mode)``: uint8 ``(H, W)`` or ``(H, W, 3)``, and ``"L"`` or ``"RGB"``.

    Raises:
        ArrayInputError: If the file, key or index does not exist, the array is not uint8 ``(N, H, W[, 3])``, or
            its images are over ``max_pixels``.
    """
    parsed = array_item(path)
    if parsed is None:
        raise ArrayInputError(f"{path}: not an item name <file>#<key>[<index>].")
    file, key, index = parsed
    arrays = _load(file)
    if key not in arrays:
        raise ArrayInputError(f"{path}: {file} has no array {key!r}; it has {', '.join(arrays)}.")
    a = arrays[key]
    if not _holds_images(a.dtype, a.shape):  # an .npz's arrays are chosen by name only
        raise ArrayInputError(f"{path}: {key} is {a.dtype} {a.shape}; expected uint8 (N, H, W) or (N, H, W, 3).")
    if max_pixels is not None and int(a.shape[1]) * int(a.shape[2]) > max_pixels:
        raise ArrayInputError(f"{path}: image is {a.shape[2]}x{a.shape[1]} = {int(a.shape[1]) * int(a.shape[2]):,} "
                              f"pixels, over the limit of {max_pixels:,}; refusing to read it.")
    if index >= len(a):
        raise ArrayInputError(f"{path}: index {index} is past the {len(a)} images of {key}.")
    image = np.asarray(a[index])
    if mode == "rgb" and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    elif mode == "gray" and image.ndim == 3:  # as images.read_image makes gray of a colour file: Pillow's fixed point
        from PIL import Image

        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"), dtype=np.uint8)
    return np.ascontiguousarray(image), "L" if a.ndim == 3 else "RGB"


def source_format(path: str | Path) -> str:
    """``"HDF5"`` or ``"NPZ"``: the format of an array file's item, for ``ImageRecord.source_format``."""
    return "HDF5" if _is_hdf5(Path(str(path).split("#", 1)[0])) else "NPZ"
