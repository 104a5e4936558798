"""MedMNIST ``.npz`` files as image inputs: ``breastdx predict breastmnist breastmnist.npz`` (every split) or
``breastmnist.npz#test`` (one split).

A MedMNIST v2 file (Yang et al. 2023, Scientific Data 10:41, doi:10.1038/s41597-022-01721-8) holds
``train_images``, ``val_images`` and ``test_images`` arrays, uint8 ``(N, H, W)`` (grey) or ``(N, H, W, 3)``, beside
their labels. :func:`expand_npz` turns such an input into one item per image, named
``<file>.npz#<split>_images[<index>]`` (index zero-padded, so that names sort in array order); :func:`read_npz_item`
reads one, as :func:`breastdx.data.images.read_image` reads a file (which it does for these names). The arrays are
loaded once per file, without pickle.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
import numpy as np

SPLITS = ("train", "val", "test")
"""MedMNIST's splits, in the order their images are listed."""

class NpzInputError(ValueError):
    """A MedMNIST ``.npz`` input that cannot be read; the message names the file (and the item)."""


_ITEM = re.compile(r"^(?P<file>.+\.npz)#(?P<key>[A-Za-z0-9_]+)\[(?P<index>\d+)\]$")
_INPUT = re.compile(r"^(?P<file>.+\.npz)(#(?P<split>.*))?$", re.IGNORECASE)


def is_npz_input(item: str | Path) -> bool:
    """True for ``<file>.npz`` or ``<file>.npz#<anything>`` (an input to expand, whose fragment :func:`expand_npz`
    checks), not for one item of it."""
    return bool(_INPUT.match(str(item))) and not _ITEM.match(str(item))


def npz_item(path: str | Path) -> tuple[Path, str, int] | None:
    """``(file, array key, index)`` of an item name ``<file>.npz#<key>[<index>]``, or None for another path."""
    m = _ITEM.match(str(path))
    return None if m is None else (Path(m["file"]), m["key"], int(m["index"]))


@lru_cache(maxsize=4)
def _arrays(file: str, stamp: float) -> dict[str, np.ndarray]:  # stamp: the file's mtime, so a new file reloads
    try:
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k.endswith("_images")}
    except (OSError, ValueError) as e:
        raise NpzInputError(f"{file}: not a readable .npz file ({type(e).__name__}: {e}).") from None


def _load(file: Path) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise NpzInputError(f"{file}: no such file.")
    arrays = _arrays(str(file), file.stat().st_mtime)
    if not arrays:
        raise NpzInputError(f"{file}: no '<split>_images' array; expected a MedMNIST .npz file (train_images, "
                             f"val_images, test_images).")
    return arrays


def expand_npz(item: str | Path) -> list[Path]:
    """One item name per image of a MedMNIST ``.npz`` input (every split, or the one after ``#``).

    Raises:
        NpzInputError: If the file is missing, not an ``.npz``, holds no ``*_images`` array, or has no such split;
            the message names the file and the splits it has.
    """
    m = _INPUT.match(str(item))
    if m is None:
        raise NpzInputError(f"{item}: expected <file>.npz or <file>.npz#<split>.")
    file, split = Path(m["file"]), m["split"]
    if split is not None and not re.fullmatch(r"[A-Za-z]+", split):
        raise NpzInputError(f"{item}: after '#' expected a split ({', '.join(SPLITS)}) or one image, as "
                            f"{file.name}#test_images[000017]; got {split!r}.")
    arrays = _load(file)
    have = [k[: -len("_images")] for k in arrays]
    keys = [f"{s}_images" for s in (SPLITS if split is None else (split,)) if f"{s}_images" in arrays]
    if split is not None and not keys:
        raise NpzInputError(f"{file}: no split {split!r}; it has {', '.join(have)}.")
    if split is None:
        keys += [k for k in arrays if k not in keys]
    return [Path(f"{file}#{k}[{i:06d}]") for k in keys for i in range(len(arrays[k]))]


def read_npz_item(path: str | Path, mode: str = "gray") -> tuple[np.ndarray, str]:
    """One image of a MedMNIST ``.npz`` file (:func:`breastdx.data.images.read_image` wraps it in an ``ImageRecord``).

    Args:
        path: ``<file>.npz#<key>[<index>]`` (from :func:`expand_npz`).
        mode: ``"gray"`` (colour arrays become luminance 0.299 R + 0.587 G + 0.114 B) or ``"rgb"`` (grey arrays
            are repeated over three channels).

    Returns:
        ``(image, stored mode)``: uint8 ``(H, W)`` or ``(H, W, 3)``, and ``"L"`` or ``"RGB"``.

    Raises:
        NpzInputError: If the file, key or index does not exist, or the array is not uint8 ``(N, H, W[, 3])``.
    """
    parsed = npz_item(path)
    if parsed is None:
        raise NpzInputError(f"{path}: not an item name <file>.npz#<key>[<index>].")
    file, key, index = parsed
    arrays = _load(file)
    if key not in arrays:
        raise NpzInputError(f"{path}: {file} has no array {key!r}; it has {', '.join(arrays)}.")
    a = arrays[key]
    if a.dtype != np.uint8 or a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] != 3):
        raise NpzInputError(f"{path}: {key} is {a.dtype} {a.shape}; expected uint8 (N, H, W) or (N, H, W, 3).")
    if index >= len(a):
        raise NpzInputError(f"{path}: index {index} is past the {len(a)} images of {key}.")
    image = a[index]
    if mode == "rgb" and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    elif mode == "gray" and image.ndim == 3:
        image = np.round(image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), "L" if a.ndim == 3 else "RGB"
