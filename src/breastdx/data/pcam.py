"""PatchCamelyon (PCam): 96 x 96 RGB patches of lymph-node sections; label 1 = tumour in the centre 32 x 32.

Two storage formats are read, both with PCam's own train / valid / test split:

* **Folders** (``<root>/<split>/<label>/*.jpg``, label ``0`` or ``1``), as in ``<data root>/pcam_subset``:
  a JPEG re-encoding of part of PCam (:func:`read_pcam_folder`). Files are listed and checked when the
  folder is read; pixels are decoded when an item is read.
* **The official HDF5 files** ``camelyonpatch_level_2_split_<split>_{x,y}.h5`` in ``<data root>/pcam``
  (:func:`read_pcam_h5`). ``x`` holds ``uint8`` patches of shape ``(N, 96, 96, 3)`` and ``y`` ``uint8``
  labels of shape ``(N, 1, 1, 1)``. The files are opened lazily, once per process (so that data-loader
  workers each have their own handle) and read one patch, or one slice, at a time: memory stays bounded
  whatever ``N`` (the training split is 262,144 patches, about 7 GB). No official HDF5 file is
  available in this project's data: the reader is tested on files written in exactly that layout
  (:func:`write_pcam_h5`) from the JPEG subset.

:func:`load_pcam` picks the format found under the data root (HDF5 first). :func:`download_pcam`
fetches the official ``.h5.gz`` files from Zenodo (record 2546921), checks their MD5 and decompresses
them while streaming.

Note that PCam comes from lymph-node sections (metastases of breast cancer), not from breast tissue, and
that it holds pixel-identical duplicates within the positive class (see the data's PROVENANCE.md).

References:
    Veeling, B. S., Linmans, J., Winkens, J., Cohen, T. & Welling, M. (2018). Rotation equivariant CNNs
    for digital pathology. MICCAI 2018, LNCS 11071:210-218. doi:10.1007/978-3-030-00934-2_24
    Ehteshami Bejnordi, B. et al. (2017). Diagnostic assessment of deep learning algorithms for
    detection of lymph node metastases in women with breast cancer. JAMA 318(22):2199-2210.
    doi:10.1001/jama.2017.14585
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from breastdx.data.array_images import GZIP_MAGIC, TRUNCATED_HDF5_HINT
from breastdx.data.checksum import sha256_file, sha256_listing
from breastdx.data.errors import DataError
from breastdx.data.image_files import visible_entries
from breastdx.data.patches import CLASS_NAMES, PATCH_DATASETS, FilePatchSource, PatchSource

logger = logging.getLogger(__name__)

PCAM_SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""PCam's official splits, with the names its files use."""

PATCH_SHAPE: tuple[int, int, int] = (96, 96, 3)
"""``(H, W, C)`` of every PCam patch."""

H5_FOLDER = "pcam"
"""Folder below the data root that holds the official HDF5 files."""

SUBSET_FOLDER = "pcam_subset"
"""Folder below the data root that holds the JPEG folder layout."""

H5_NAME = "camelyonpatch_level_2_split_{split}_{kind}.h5"
"""Official HDF5 file name; ``kind`` is ``"x"`` (patches) or ``"y"`` (labels)."""

FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
"""Patch file endings accepted in the folder layout (any case)."""

ZENODO_BASE_URL = "https://zenodo.org/records/2546921/files"
"""Where the official files are published (Zenodo record 2546921, CC0)."""

PCAM_FILES: dict[str, tuple[str, str | None]] = {
    "camelyonpatch_level_2_split_train_x.h5": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_train_x.h5.gz", "1571f514728f59376b705fc836ff4b63"),
    "camelyonpatch_level_2_split_train_y.h5": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_train_y.h5.gz", "35c2d7259d906cfc8143347bb8e05be7"),
    "camelyonpatch_level_2_split_valid_x.h5": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_valid_x.h5.gz", "d5b63470df7cfa627aeec8b9dc0c066e"),
    "camelyonpatch_level_2_split_valid_y.h5": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_valid_y.h5.gz", "2b85f58b927af9964a4c15b8f7e8f179"),
    "camelyonpatch_level_2_split_test_x.h5": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_test_x.h5.gz", "d8c2d60d490dbd479f8199bdfa0cf6ec"),
    "camelyonpatch_level_2_split_test_y.h5": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_test_y.h5.gz", "60a7035772fbdb7f34eb86d4420cf66a"),
    "camelyonpatch_level_2_split_train_meta.csv": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_train_meta.csv", "5a3dd671e465cfd74b5b822125e65b0a"),
    "camelyonpatch_level_2_split_valid_meta.csv": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_valid_meta.csv", "67589e00a4a37ec317f2d1932c7502ca"),
    "camelyonpatch_level_2_split_test_meta.csv": (
        f"{ZENODO_BASE_URL}/camelyonpatch_level_2_split_test_meta.csv", "3455fd69135b66734e1008f3af684566"),
}
"""Installed file name to ``(URL, MD5 of the file at that URL)``.

The ``.h5`` files are published gzipped (the URL ends in ``.gz``; the MD5 is that of the ``.gz`` file);
the ``*_meta.csv`` files (the Camelyon16 slide of each patch) are published as they are. The MD5 values
are those of the files as named on the record, as measured by users and adopted by torchvision
(basveeling/pcam issues #1 and #4, pytorch/vision PR #6644): the table in the PCam README swaps the
values of ``valid`` and ``test``.
"""

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def h5_paths(folder: str | Path, split: str) -> tuple[Path, Path]:
    """The ``(x, y)`` HDF5 files of ``split`` in ``folder``.

    Raises:
        ValueError: If ``split`` is not one of :data:`PCAM_SPLITS`.
    """
    _check_split(split)
    folder = Path(folder)
    return folder / H5_NAME.format(split=split, kind="x"), folder / H5_NAME.format(split=split, kind="y")


def _check_split(split: str) -> None:
    if split not in PCAM_SPLITS:
        raise ValueError(f"PCam split must be one of {', '.join(PCAM_SPLITS)}; got {split!r}.")


# ----------------------------------------------------------------------------------------------------
# Folder layout


def read_pcam_folder(root: str | Path, split: str) -> FilePatchSource:
    """Read the folder layout ``<root>/<split>/{0,1}/*.jpg`` of one PCam split.

    Every file is listed and checked before anything is returned; pixels are decoded when an item is
    read (:meth:`~breastdx.data.patches.PatchSource.verify` decodes them all). Hidden files (names
    starting with ``.``) are skipped; plain files directly in ``<root>/<split>`` are logged and ignored.

    Args:
        root: The folder holding ``train/``, ``valid/`` and ``test/`` (e.g. ``<data root>/pcam_subset``).
        split: ``"train"``, ``"valid"`` or ``"test"``.

    Returns:
        A :class:`~breastdx.data.patches.FilePatchSource` with ids ``"<split>/<label>/<file>"``, no
        groups (the layout carries no slide or patient id), patches checked to be 96 x 96 RGB when read,
        and metadata ``"index"``: the number in the file name (``patch0000123.jpg`` -> 123; -1 if none),
        which in ``pcam_subset`` is the row of the patch in the official HDF5 file.

    Raises:
        ValueError: If ``split`` is not a PCam split.
        DataError: Listing every problem: a missing split folder, a folder other than ``0`` and ``1``,
            a file that is not a JPEG/PNG/TIFF patch, an empty file, a file name under both labels, or no
            patch at all.
    """
    _check_split(split)
    root = Path(root)
    base = root / split
    if not base.is_dir():
        raise DataError(f"{base}: no such folder; expected the PCam folder layout "
                        f"<root>/<split>/<label>/*.jpg with split in {', '.join(PCAM_SPLITS)} and label 0 or 1.")
    problems: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    seen: dict[str, str] = {}
    for entry in visible_entries(base):
        if not entry.is_dir():
            logger.warning("%s: not a label folder; ignored", entry)
            continue
        if entry.name not in ("0", "1"):
            problems.append(f"{entry}: unexpected folder; expected label folders 0 (no tumour) and 1 (tumour)")
            continue
        label = int(entry.name)
        for f in visible_entries(entry):
            if not f.is_file():
                problems.append(f"{f}: a folder inside a label folder; expected patch files only")
            elif f.suffix.lower() not in FOLDER_SUFFIXES:
                problems.append(f"{f}: not a patch file; expected one of {', '.join(FOLDER_SUFFIXES)}")
            elif f.stat().st_size == 0:
                problems.append(f"{f}: empty file (0 bytes)")
            elif f.stem in seen and seen[f.stem] != entry.name:
                problems.append(f"{f}: the same name is also under label {seen[f.stem]}; a patch has one label")
            else:
                seen[f.stem] = entry.name
                paths.append(f)
                labels.append(label)
    if not paths and not problems:
        problems.append(f"{base}: no patch files in {base}/0 or {base}/1")
    if problems:
        raise DataError(f"{base}: not a valid PCam folder split.", problems)
    index = [_number_in(p.stem) for p in paths]
    return FilePatchSource(root, paths, labels, name="pcam", class_names=CLASS_NAMES,
                           metadata={"index": np.asarray(index, dtype=np.int64)}, expected_shape=PATCH_SHAPE)


def _number_in(stem: str) -> int:
    digits = "".join(ch for ch in stem if ch.isdigit())
    return int(digits) if digits else -1


# ----------------------------------------------------------------------------------------------------
# HDF5 layout


def _sniff(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected the official PCam HDF5 file "
                        f"(download with download_pcam / `breastdx data download pcam`).")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(GZIP_MAGIC):
        raise DataError(f"{path}: still gzip-compressed (the official downloads are .h5.gz); decompress it "
                        f"first (gunzip), or use download_pcam, which does.")
    if head != _HDF5_MAGIC:
        raise DataError(f"{path}: not an HDF5 file (its first bytes are {head!r}).")


class PcamH5Source(PatchSource):
    """One split of PCam in the official HDF5 layout, read lazily.

    The labels (``N`` bytes) are read and checked when the source is made; patches are read when asked
    for. The HDF5 file is opened on first read in each process and not pickled, so the source can be
    handed to data-loader workers (each opens its own handle).

    Args:
        x_path: ``camelyonpatch_level_2_split_<split>_x.h5``: dataset ``x``, ``uint8`` ``(N, 96, 96, 3)``.
        y_path: ``camelyonpatch_level_2_split_<split>_y.h5``: dataset ``y``, ``uint8`` ``(N, 1, 1, 1)``
            (``(N,)`` is also accepted), values 0 or 1.
        split: The split name, used in ids (``"<split>/<row>"``).

    Raises:
        DataError: If a file is missing, still gzipped, not HDF5 or unreadable (truncated), lacks its dataset,
            has the wrong dtype or shape, if ``x`` and ``y`` differ in length, or a label is not 0 or 1. The message
            names the file.
    """

    name = "pcam"
    class_names = CLASS_NAMES

    def __init__(self, x_path: str | Path, y_path: str | Path, split: str = "train") -> None:
        self.x_path, self.y_path, self.split = Path(x_path), Path(y_path), split
        _sniff(self.x_path)
        _sniff(self.y_path)
        with _open_h5(self.x_path) as f:
            x = _dataset(f, "x", self.x_path)
            if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != PATCH_SHAPE:
                raise DataError(f"{self.x_path}: dataset 'x' is {x.dtype} of shape {x.shape}; expected uint8 of "
                                f"shape (N, 96, 96, 3).")
            n = int(x.shape[0])
        with _open_h5(self.y_path) as f:
            y = _dataset(f, "y", self.y_path)
            if y.shape[:1] != (n,) or int(np.prod(y.shape[1:], dtype=np.int64)) != 1:
                raise DataError(f"{self.y_path}: dataset 'y' has shape {y.shape}; expected ({n}, 1, 1, 1), one "
                                f"label per patch of {self.x_path.name} ({n} patches).")
            if not np.issubdtype(y.dtype, np.integer) and y.dtype != bool:
                raise DataError(f"{self.y_path}: dataset 'y' is {y.dtype}; expected integer labels (uint8).")
            labels = np.asarray(y[...]).reshape(n).astype(np.int64)
        bad = np.flatnonzero((labels != 0) & (labels != 1))
        if bad.size:
            raise DataError(f"{self.y_path}: {bad.size} labels are not 0 or 1 (first at row {int(bad[0])}: "
                            f"{int(labels[bad[0]])}).")
        self._labels = labels
        self._n = n
        self._file: Any = None
        self._x: Any = None
        self._pid: int | None = None
        self._checksum: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_file=None, _x=None, _pid=None)  # HDF5 handles are per process
        return state

    def _dataset(self) -> Any:
        pid = os.getpid()
        if self._x is None or self._pid != pid:
            from breastdx.data.array_images import HDF5_CHUNK_CACHE

            self._file = _open_h5(self.x_path, rdcc_nbytes=HDF5_CHUNK_CACHE)  # a file compressed in chunks
            self._x = self._file["x"]
            self._pid = pid
        return self._x

    def close(self) -> None:
        """Close this process's HDF5 handle (it is reopened on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = self._x = self._pid = None

    def __len__(self) -> int:
        return self._n

    def get(self, index: int) -> tuple[np.ndarray, int]:
        i = self._check_index(index)
        return np.asarray(self._dataset()[i], dtype=np.uint8), int(self._labels[i])

    def get_many(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Read several patches in one HDF5 call (sorted, unique rows are read, then put in the order given)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        for i in (idx.min(), idx.max()) if idx.size else ():
            self._check_index(int(i))
        rows, inverse = np.unique(idx, return_inverse=True)
        if rows.size and rows[-1] - rows[0] + 1 == rows.size:
            block = self._dataset()[int(rows[0]):int(rows[-1]) + 1]
        else:
            block = self._dataset()[rows] if rows.size else np.zeros((0,) + PATCH_SHAPE, np.uint8)
        return np.asarray(block, dtype=np.uint8)[inverse], self._labels[idx].copy()

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Patches ``start`` to ``stop - 1`` in one contiguous read.

        Returns:
            ``uint8`` array of shape ``(stop - start, 96, 96, 3)``.

        Raises:
            IndexError: If the range is not inside ``[0, N]``.
        """
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"{self.x_path}: range {start}:{stop} outside 0:{self._n}.")
        return np.asarray(self._dataset()[start:stop], dtype=np.uint8)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @functools.cached_property
    def ids(self) -> Sequence[str]:  # type: ignore[override]
        return [f"{self.split}/{i}" for i in range(self._n)]

    @property
    def checksum(self) -> str:
        """SHA-256 over the SHA-256 of both files' bytes (read in 1 MiB chunks: about a minute for train)."""
        if self._checksum is None:
            self._checksum = sha256_listing([(self.x_path.name, sha256_file(self.x_path)),
                                             (self.y_path.name, sha256_file(self.y_path))])
        return self._checksum


def _open_h5(path: Path, **kwargs: Any) -> Any:
    """``h5py.File(path, "r")``; a file that HDF5 cannot open (truncated, damaged) raises DataError naming it."""
    import h5py

    try:
        return h5py.File(path, "r", **kwargs)
    except OSError as err:
        hint = f" {TRUNCATED_HDF5_HINT}" if "truncated" in str(err) else ""
        raise DataError(f"{path}: not a readable HDF5 file ({err}); expected the official PCam file.{hint}") from None


def _dataset(f: Any, key: str, path: Path) -> Any:
    import h5py

    if key not in f or not isinstance(f[key], h5py.Dataset):
        found = ", ".join(sorted(f.keys())) or "nothing"
        raise DataError(f"{path}: no dataset {key!r} (it holds {found}); expected the official PCam layout.")
    return f[key]


def read_pcam_h5(folder: str | Path, split: str) -> PcamH5Source:
    """Open the official HDF5 pair of ``split`` in ``folder`` (see :class:`PcamH5Source`).

    Raises:
        ValueError: If ``split`` is not a PCam split.
        DataError: As :class:`PcamH5Source`.
    """
    x, y = h5_paths(folder, split)
    return PcamH5Source(x, y, split)


def write_pcam_h5(folder: str | Path, split: str, source: PatchSource, batch: int = 1024) -> tuple[Path, Path]:
    """Write ``source`` as an official-layout HDF5 pair (``x`` uint8 ``(N, 96, 96, 3)``, ``y`` ``(N, 1, 1, 1)``).

    Patches are copied ``batch`` at a time, so memory stays bounded. Used to build test files and to
    convert a folder layout; the data are stored uncompressed and contiguous, like the official files.

    Args:
        folder: Output folder (created).
        split: The split name in the file names.
        source: Patches of shape ``(96, 96, 3)``.
        batch: Patches per write.

    Returns:
        The ``(x, y)`` paths.

    Raises:
        ValueError: If ``split`` is not a PCam split.
        FileExistsError: If a file exists already.
    """
    import h5py

    x_path, y_path = h5_paths(folder, split)
    for p in (x_path, y_path):
        if p.exists():
            raise FileExistsError(f"{p} exists already; it is not overwritten.")
    x_path.parent.mkdir(parents=True, exist_ok=True)
    n = len(source)
    with h5py.File(x_path, "w") as fx:
        x = fx.create_dataset("x", shape=(n,) + PATCH_SHAPE, dtype=np.uint8)
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            x[start:stop], _ = source.get_many(range(start, stop))
    with h5py.File(y_path, "w") as fy:
        fy.create_dataset("y", data=source.labels.astype(np.uint8).reshape(n, 1, 1, 1))
    return x_path, y_path


# ----------------------------------------------------------------------------------------------------
# Loading by name


@PATCH_DATASETS.register("pcam")
def load_pcam(data_root: str | Path, split: str | None = "train") -> PatchSource:
    """Load a PCam split from the data root, in whichever format is there.

    Looks for the official HDF5 pair in ``<data_root>/pcam`` first, then for the folder layout in
    ``<data_root>/pcam_subset``. ``data_root`` may also be one of those folders itself.

    Args:
        data_root: The data root.
        split: ``"train"``, ``"valid"``, ``"test"``, or None for all three in that order (one source
            whose ids start with the split name).

    Returns:
        A :class:`PcamH5Source` or a folder :class:`~breastdx.data.patches.FilePatchSource`.

    Raises:
        ValueError: If ``split`` is not a PCam split.
        DataError: If neither format is found (the message says where it looked and how to get the
            data, or names the ``.h5.gz`` files found still compressed), or the data are invalid.
    """
    if split is None:
        from breastdx.data.patches import ConcatPatchSource

        return ConcatPatchSource([load_pcam(data_root, s) for s in PCAM_SPLITS], name="pcam")
    _check_split(split)
    root = Path(data_root)
    for folder in (root / H5_FOLDER, root):
        x, y = h5_paths(folder, split)
        if x.exists() or y.exists():
            logger.info("PCam %s: official HDF5 files in %s", split, folder)
            return PcamH5Source(x, y, split)
    for folder in (root / SUBSET_FOLDER, root):
        if (folder / split).is_dir():
            logger.info("PCam %s: folder layout in %s", split, folder)
            return read_pcam_folder(folder, split)
    gzipped = [p for folder in (root / H5_FOLDER, root) for p in h5_paths(folder, split)
               if p.with_name(p.name + ".gz").is_file()]
    if gzipped:  # the official files as published, not yet decompressed
        raise DataError(f"PCam {split}: found {', '.join(str(p) + '.gz' for p in gzipped)}, still gzip-compressed; "
                        f"decompress (gunzip) them in place, or use `breastdx data download pcam`, which does.")
    raise DataError(
        f"PCam not found below {root}: expected {root / H5_FOLDER / H5_NAME.format(split=split, kind='x')} "
        f"(and _y.h5), or the folder layout {root / SUBSET_FOLDER}/{split}/{{0,1}}/*.jpg. Download the "
        f"official files with `breastdx data download pcam`, or point the data root (--data-dir or "
        f"BREASTDX_DATA) at a folder that holds {H5_FOLDER}/ or {SUBSET_FOLDER}/."
    )


# ----------------------------------------------------------------------------------------------------
# Download


def download_pcam(data_root: str | Path, base_url: str | None = None, splits: Sequence[str] = PCAM_SPLITS,
                  force: bool = False, progress: Callable[[int, int | None], None] | None = None,
                  kept: list[str] | None = None) -> Path:
    """Download the official PCam files into ``<data_root>/pcam``, check their MD5 and decompress them.

    Each file of :data:`PCAM_FILES` for the requested splits is streamed to a temporary file in the
    target folder, its MD5 compared with the published value, then (``.gz``) decompressed while
    streaming into ``<name>.part`` and renamed. A file already in place is kept (unless ``force``), so an
    interrupted download resumes with the files still missing; a file is never half-written under its
    final name. Each finished ``x``/``y`` pair is opened with :func:`read_pcam_h5` to check its layout.
    The training images need about 6.4 GB (gz) plus 7.2 GB (decompressed) of free space at once.

    Args:
        data_root: The data root; ``pcam/`` is created below it.
        base_url: Another place holding the same file names (a mirror, or a ``file://`` folder in
            tests); default :data:`ZENODO_BASE_URL`. The MD5 values still apply.
        splits: Which splits to fetch (with their ``*_meta.csv``).
        force: Download files that are already in place again.
        progress: Called as ``progress(bytes_done, bytes_total_or_None)`` while downloading each file.
        kept: A list that gets the names of the files already in place and kept: not MD5-checked (the published
            MD5 values are of the ``.gz`` downloads), only their layout.

    Returns:
        The ``pcam`` folder.

    Raises:
        ValueError: If a split is not a PCam split.
        DownloadError: If the data root cannot be written, a transfer fails, an MD5 differs (expected and actual
            are given; nothing is installed), or a file is not valid gzip.
        DataError: If a decompressed pair does not have the official layout.
    """
    from breastdx.data.fetch import DownloadError, check_digest, fetch_url, writing_into

    for s in splits:
        _check_split(s)
    dest = Path(data_root) / H5_FOLDER
    with writing_into(data_root):
        dest.mkdir(parents=True, exist_ok=True)
    wanted = [name for name in PCAM_FILES if any(f"_split_{s}_" in name for s in splits)]
    for name in wanted:
        target = dest / name
        if target.exists() and not force:
            logger.info("%s: already present; kept (not MD5-checked: the published MD5 is of the download)", target)
            if kept is not None:
                kept.append(name)
            continue
        url, md5 = PCAM_FILES[name]
        if base_url is not None:
            url = f"{base_url.rstrip('/')}/{url.rsplit('/', 1)[1]}"
        with writing_into(data_root):
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".download", dir=dest)
        os.close(fd)
        tmp = Path(tmp_name)
        part = dest / f"{name}.part"
        try:
            _, actual = fetch_url(url, tmp, progress)
            check_digest(url, "MD5", md5, actual)
            if md5 is None:
                logger.warning("%s: no published MD5 known; installed unverified (MD5 %s)", url, actual)
            if url.endswith(".gz"):
                try:
                    with gzip.open(tmp, "rb") as src, open(part, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (OSError, EOFError) as err:
                    raise DownloadError(f"{url}: not a valid gzip file ({type(err).__name__}: {err}).") from None
                os.replace(part, target)
            else:
                os.replace(tmp, target)
            logger.info("%s: downloaded, MD5 verified, installed as %s", url, target)
        finally:
            tmp.unlink(missing_ok=True)
            part.unlink(missing_ok=True)
    for s in splits:
        x, y = h5_paths(dest, s)
        PcamH5Source(x, y, s)  # checks the layout; raises DataError naming the file
    return dest
