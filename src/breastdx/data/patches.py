"""Patch datasets: one small interface over the readers of PCam, IDC and BreakHis, and their registry.

A :class:`PatchSource` is a labelled, indexable set of RGB patches. Every reader returns one, whatever
the stored format (JPEG/PNG folders, an HDF5 pair, a NumPy array), so that splits, summaries and training
code see the same thing:

* ``len(source)`` items; ``source.get(i)`` gives ``(image, label)``: ``uint8`` ``(H, W, 3)`` and an int;
* ``source.labels``: ``int64`` ``(N,)``, known without reading any pixel;
* ``source.ids``: a unique string per item (a relative path, or a file name and row);
* ``source.groups``: a patient (or slide) id per item, or None when the format has none;
* ``source.checksum``: SHA-256 of the stored data, written into split files and model folders;
* ``source.class_names``: class names in label order.

Readers never drop a bad item silently: listing problems (file names, folder names, shapes, label
values) raise :class:`~breastdx.data.errors.DataError` listing every problem, and an item that cannot
be decoded raises :class:`~breastdx.data.images.ImageReadError` naming its file when it is read.
:meth:`PatchSource.verify` decodes every item and lists all failures at once.

Readers are registered by name in :data:`PATCH_DATASETS` (``"pcam"``, ``"idc"``, ``"breakhis"``) and
loaded with :func:`load_patch_dataset`.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from breastdx.data.checksum import sha256_file, sha256_listing
from breastdx.data.errors import DataError
from breastdx.registry import Registry

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("normal", "tumour")
"""Class names of the binary patch tasks in label order: 0 = no tumour, 1 = tumour (PCam, IDC)."""

PatchLoader = Callable[..., "PatchSource"]
"""A reader registered in :data:`PATCH_DATASETS`: ``loader(data_root, split=None, **options) -> PatchSource``."""

PATCH_DATASETS: Registry[PatchLoader] = Registry("patch dataset")
"""Patch-dataset readers by name; filled by ``@PATCH_DATASETS.register(name)`` in each reader module."""

_READER_MODULES = ("breastdx.data.pcam", "breastdx.data.idc", "breastdx.data.breakhis")


def load_patch_dataset(name: str, data_root: str | Path, split: str | None = None,
                       **options: Any) -> "PatchSource":
    """Load the patch dataset registered as ``name`` from below ``data_root``.

    Args:
        name: ``"pcam"``, ``"idc"`` or ``"breakhis"`` (see :data:`PATCH_DATASETS`).
        data_root: The data root (see :func:`breastdx.config.resolve_data_root`).
        split: An official split (PCam: ``"train"``, ``"valid"``, ``"test"``), or None for every item.
            Datasets without an official split (IDC, BreakHis) accept only None: split them with
            :func:`breastdx.data.patch_split.patch_split`.
        **options: Reader options (e.g. ``magnification=40`` for BreakHis).

    Returns:
        The :class:`PatchSource`.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message suggests the closest name).
        DataError: If the data are missing or invalid (the reader's message names the files).
    """
    _import_readers()
    return PATCH_DATASETS.get(name)(Path(data_root), split=split, **options)


def patch_dataset_names() -> list[str]:
    """Names of the registered patch datasets (after importing the reader modules), sorted."""
    _import_readers()
    return PATCH_DATASETS.names()


def _import_readers() -> None:
    import importlib

    for module in _READER_MODULES:  # an explicit list: no package walking
        importlib.import_module(module)


class PatchSource(ABC):
    """A labelled set of RGB patches read one at a time.

    Subclasses implement :meth:`__len__`, :meth:`get`, :attr:`labels`, :attr:`ids` and :attr:`checksum`;
    :attr:`groups` and :attr:`metadata` default to none.

    Attributes:
        name: Dataset name (``"pcam"``, ``"idc"``, ``"breakhis"``), written into split files.
        class_names: Class names in label order.
    """

    name: str = "patches"
    class_names: tuple[str, ...] = CLASS_NAMES

    @abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abstractmethod
    def get(self, index: int) -> tuple[np.ndarray, int]:
        """Read item ``index``.

        Returns:
            ``(image, label)``: ``uint8`` image and the int label.

        Shape:
            image: ``(H, W, 3)``.

        Raises:
            IndexError: If ``index`` is outside ``[0, len)``.
            ImageReadError: If the item cannot be decoded (the message names its file).
        """

    @property
    @abstractmethod
    def labels(self) -> np.ndarray:
        """``int64`` labels, shape ``(N,)``, indices into :attr:`class_names`."""

    @property
    @abstractmethod
    def ids(self) -> Sequence[str]:
        """A unique string per item (relative path or ``file#row``), used in split files."""

    @property
    def groups(self) -> np.ndarray | None:
        """Patient (or slide) id per item, ``str`` array ``(N,)``; None when the format has none."""
        return None

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        """Further per-item columns (e.g. ``"magnification"``, ``"x"``, ``"y"``), each of shape ``(N,)``."""
        return {}

    @property
    @abstractmethod
    def checksum(self) -> str:
        """Hex SHA-256 of the stored data (computed on first use, then cached)."""

    # ------------------------------------------------------------------------------------------------
    # Shared behaviour

    def _check_index(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if not 0 <= i < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} items.")
        return i

    def get_many(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Read several items of the same size into one array.

        Args:
            indices: Item indices, in any order, repeats allowed.

        Returns:
            ``(images, labels)``: ``uint8`` ``(B, H, W, 3)`` and ``int64`` ``(B,)``, in the order given.

        Raises:
            ValueError: If the items differ in size.
        """
        items = [self.get(int(i)) for i in indices]
        shapes = {im.shape for im, _ in items}
        if len(shapes) > 1:
            raise ValueError(f"{self.name}: items of different sizes {sorted(shapes)} cannot be stacked.")
        if not items:
            return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0, np.int64)
        return np.stack([im for im, _ in items]), np.asarray([lab for _, lab in items], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        """Number of items per class, in :attr:`class_names` order."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {c: int(counts[k]) for k, c in enumerate(self.class_names)}

    def subset(self, indices: Sequence[int]) -> "PatchSource":
        """A view of the given items (no pixel is read or copied)."""
        return PatchSubset(self, indices)

    def verify(self) -> None:
        """Decode every item and check its shape, listing all failures at once.

        Raises:
            DataError: Naming every item that cannot be read, with the reason.
        """
        problems = []
        for i in range(len(self)):
            try:
                self.get(i)
            except (DataError, OSError) as err:
                problems.append(f"{self.ids[i]}: {err}")
        if problems:
            raise DataError(f"{self.name}: {len(problems)} of {len(self)} items cannot be read.", problems)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={self.class_counts()})"


def _as_labels(labels: Sequence[int] | np.ndarray, n_classes: int, where: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one value per item, shape (N,); got shape {y.shape}.")
    if y.size and (not np.issubdtype(y.dtype, np.integer) and y.dtype != bool):
        raise DataError(f"{where}: labels must be integers; got dtype {y.dtype}.")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise DataError(f"{where}: labels must be in 0..{n_classes - 1}; {bad.size} are not "
                        f"(first at item {int(bad[0])}: {int(y[bad[0]])}).")
    return y


def _check_columns(n: int, where: str, groups: Sequence[str] | None,
                   metadata: Mapping[str, Sequence[Any]] | None) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    g = None
    if groups is not None:
        g = np.asarray([str(x) for x in groups], dtype=str)
        if g.shape != (n,):
            raise DataError(f"{where}: {g.shape[0]} groups for {n} items.")
    meta = {}
    for key, col in (metadata or {}).items():
        arr = np.asarray(col)
        if arr.shape[:1] != (n,):
            raise DataError(f"{where}: metadata column {key!r} has {arr.shape[0] if arr.ndim else 0} values "
                            f"for {n} items.")
        meta[key] = arr
    return g, meta


class _StoredColumns(PatchSource):
    """A source that holds its per-item columns in memory (``_labels``, ``_ids``, ``_groups``, ``_meta``),
    set by the subclass's ``__init__``."""

    _labels: np.ndarray
    _ids: list[str]
    _groups: np.ndarray | None
    _meta: dict[str, np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def ids(self) -> Sequence[str]:
        return self._ids

    @property
    def groups(self) -> np.ndarray | None:
        return self._groups

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        return self._meta


class ArrayPatchSource(_StoredColumns):
    """Patches held in an array (in memory or memory-mapped from a ``.npy`` file).

    Args:
        images: ``uint8`` array-like of shape ``(N, H, W, 3)``; a memory map is read one patch at a time.
        labels: ``(N,)`` integers in ``0..len(class_names) - 1``.
        name: Dataset name.
        class_names: Class names in label order.
        ids: ``N`` unique strings; default the row numbers ``"0"``, ``"1"``, ...
        groups: ``N`` patient ids, or None.
        metadata: Further per-item columns.
        checksum: The data checksum when the caller knows it (e.g. the files' hashes); else the SHA-256
            of the images, labels and groups, computed on first use (which reads the whole array once).

    Raises:
        DataError: If the shapes or labels are invalid.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int] | np.ndarray, name: str = "patches",
                 class_names: Sequence[str] = CLASS_NAMES, ids: Sequence[str] | None = None,
                 groups: Sequence[str] | None = None, metadata: Mapping[str, Sequence[Any]] | None = None,
                 checksum: str | None = None) -> None:
        self.name = name
        self.class_names = tuple(class_names)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"{name}: images must be uint8 of shape (N, H, W, 3); got {images.dtype} "
                            f"{tuple(images.shape)}.")
        self._images = images
        self._labels = _as_labels(labels, len(self.class_names), name)
        n = images.shape[0]
        if self._labels.shape[0] != n:
            raise DataError(f"{name}: {n} images but {self._labels.shape[0]} labels; expected one label per image.")
        self._ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
        if len(self._ids) != n or len(set(self._ids)) != n:
            raise DataError(f"{name}: ids must be {n} unique strings; got {len(self._ids)} "
                            f"({len(set(self._ids))} unique).")
        self._groups, self._meta = _check_columns(n, name, groups, metadata)
        self._checksum = checksum

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def get(self, index: int) -> tuple[np.ndarray, int]:
        i = self._check_index(index)
        return np.array(self._images[i], dtype=np.uint8), int(self._labels[i])

    def get_many(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        for i in idx:
            self._check_index(int(i))
        return np.array(self._images[idx], dtype=np.uint8), self._labels[idx].copy()

    @property
    def checksum(self) -> str:
        if self._checksum is None:
            from breastdx.data.checksum import sha256_arrays

            arrays = [np.asarray(self._images), self._labels]
            if self._groups is not None:
                arrays.append(self._groups)
            self._checksum = sha256_arrays(*arrays)
        return self._checksum


class FilePatchSource(_StoredColumns):
    """Patches stored one per image file (JPEG, PNG, TIFF), decoded by :func:`breastdx.data.images.read_image`.

    Args:
        root: Folder the ``ids`` are relative to (checksums use these relative paths, so they do not
            depend on where the data lie).
        paths: ``N`` image files.
        labels: ``(N,)`` integer labels.
        name: Dataset name.
        class_names: Class names in label order.
        groups: ``N`` patient ids, or None.
        metadata: Further per-item columns.
        expected_shape: ``(H, W, 3)`` every patch must have, or None to accept any size.
        pad_to: ``(H, W)``: patches smaller than this are padded with white (255) on the bottom and
            right; larger ones are an error. None to return patches as stored.

    Raises:
        DataError: If the lengths differ, a path is not below ``root`` or labels are invalid.
    """

    def __init__(self, root: str | Path, paths: Sequence[Path], labels: Sequence[int] | np.ndarray,
                 name: str = "patches", class_names: Sequence[str] = CLASS_NAMES,
                 groups: Sequence[str] | None = None, metadata: Mapping[str, Sequence[Any]] | None = None,
                 expected_shape: tuple[int, int, int] | None = None,
                 pad_to: tuple[int, int] | None = None) -> None:
        self.name = name
        self.class_names = tuple(class_names)
        self.root = Path(root)
        self.paths = [Path(p) for p in paths]
        n = len(self.paths)
        self._labels = _as_labels(labels, len(self.class_names), f"{self.root}")
        if self._labels.shape[0] != n:
            raise DataError(f"{self.root}: {n} files but {self._labels.shape[0]} labels.")
        try:
            self._ids = [p.relative_to(self.root).as_posix() for p in self.paths]
        except ValueError:
            raise DataError(f"{self.root}: every file must lie below this folder.") from None
        self._groups, self._meta = _check_columns(n, str(self.root), groups, metadata)
        self.expected_shape = tuple(expected_shape) if expected_shape is not None else None
        self.pad_to = tuple(pad_to) if pad_to is not None else None
        self._checksum: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> tuple[np.ndarray, int]:
        from breastdx.data.images import ImageReadError, read_image

        i = self._check_index(index)
        path = self.paths[i]
        image = read_image(path, mode="rgb").array
        if self.pad_to is not None:
            h, w = self.pad_to
            if image.shape[0] > h or image.shape[1] > w:
                raise ImageReadError(f"{path}: patch is {image.shape[0]}x{image.shape[1]} (HxW), larger than "
                                     f"the {h}x{w} this dataset's patches have.")
            if image.shape[:2] != (h, w):
                padded = np.full((h, w, 3), 255, dtype=np.uint8)
                padded[:image.shape[0], :image.shape[1]] = image
                image = padded
        if self.expected_shape is not None and image.shape != self.expected_shape:
            raise ImageReadError(f"{path}: patch has shape {image.shape}, expected {self.expected_shape} "
                                 f"(H, W, RGB).")
        return image, int(self._labels[i])

    @property
    def checksum(self) -> str:
        """SHA-256 over ``(relative path, SHA-256 of the file)`` of every file (reads every byte once)."""
        if self._checksum is None:
            self._checksum = sha256_listing((rel, sha256_file(p)) for rel, p in zip(self._ids, self.paths))
        return self._checksum


class PatchSubset(PatchSource):
    """A view of some items of another source (what :meth:`PatchSource.subset` returns).

    Args:
        source: The full source.
        indices: Item indices into ``source``, unique.

    Raises:
        IndexError: If an index is out of range.
        ValueError: If an index repeats.
    """

    def __init__(self, source: PatchSource, indices: Sequence[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(source)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"{source.name}: subset indices must be in [0, {n}); got "
                             f"{int(idx.min())}..{int(idx.max())}.")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"{source.name}: subset indices must not repeat.")
        self.source = source
        self.indices = idx
        self.name = source.name
        self.class_names = source.class_names

    def __len__(self) -> int:
        return int(self.indices.size)

    def get(self, index: int) -> tuple[np.ndarray, int]:
        return self.source.get(int(self.indices[self._check_index(index)]))

    def get_many(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        for i in idx:
            self._check_index(int(i))
        return self.source.get_many(self.indices[idx])

    @functools.cached_property
    def labels(self) -> np.ndarray:  # type: ignore[override]
        return self.source.labels[self.indices]

    @functools.cached_property
    def ids(self) -> Sequence[str]:  # type: ignore[override]
        all_ids = self.source.ids
        return [all_ids[i] for i in self.indices]

    @property
    def groups(self) -> np.ndarray | None:
        g = self.source.groups
        return None if g is None else g[self.indices]

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        return {k: v[self.indices] for k, v in self.source.metadata.items()}

    @property
    def checksum(self) -> str:
        """The checksum of the full source: a subset is identified by it plus its ids (the split file)."""
        return self.source.checksum


class ConcatPatchSource(PatchSource):
    """Several sources of the same classes read as one (e.g. PCam's three splits).

    Args:
        sources: Sources with equal :attr:`~PatchSource.class_names` and unique ids across all of them.
        name: Dataset name; default the first source's.

    Raises:
        ValueError: If there is no source, the class names differ, or an id repeats.
    """

    def __init__(self, sources: Sequence[PatchSource], name: str | None = None) -> None:
        if not sources:
            raise ValueError("ConcatPatchSource needs at least one source.")
        names = {s.class_names for s in sources}
        if len(names) != 1:
            raise ValueError(f"sources have different class names: {sorted(names)}.")
        self.sources = list(sources)
        self.name = name or sources[0].name
        self.class_names = sources[0].class_names
        self._offsets = np.cumsum([0] + [len(s) for s in sources])
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"{self.name}: ids repeat across the concatenated sources.")

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[PatchSource, int]:
        i = self._check_index(index)
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return self.sources[k], i - int(self._offsets[k])

    def get(self, index: int) -> tuple[np.ndarray, int]:
        source, j = self._locate(index)
        return source.get(j)

    @functools.cached_property
    def labels(self) -> np.ndarray:  # type: ignore[override]
        return np.concatenate([s.labels for s in self.sources]).astype(np.int64)

    @functools.cached_property
    def ids(self) -> Sequence[str]:  # type: ignore[override]
        return [i for s in self.sources for i in s.ids]

    @property
    def groups(self) -> np.ndarray | None:
        gs = [s.groups for s in self.sources]
        if any(g is None for g in gs):
            return None
        return np.concatenate(gs)

    @property
    def checksum(self) -> str:
        """SHA-256 over the sources' checksums, in order."""
        return sha256_listing((f"{k:04d}", s.checksum) for k, s in enumerate(self.sources))
