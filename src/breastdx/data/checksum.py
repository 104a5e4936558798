"""SHA-256 checksums of files and arrays, stored with splits and models to tie them to their data."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    """Hex SHA-256 of arrays' dtypes, shapes and C-order bytes, in the order given."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def image_hash(image: np.ndarray) -> str:
    """The first 32 hex digits (128 bits) of :func:`sha256_arrays` of one decoded image: how a model folder's
    ``training_hashes.json`` knows its training images, and how ``predict`` recognises one (the same pixels, whatever
    the file's name or container)."""
    return sha256_arrays(image)[:32]


def sha256_listing(items: Iterable[tuple[str, str]]) -> str:
    """Hex SHA-256 of ``(relative path, file hash)`` pairs, sorted by path: the checksum of a dataset folder."""
    h = hashlib.sha256()
    for rel, digest in sorted(items):
        h.update(f"{rel}\t{digest}\n".encode())
    return h.hexdigest()
