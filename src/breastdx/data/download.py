"""Downloading public datasets into the data root, verified by checksum.

Each dataset is a :class:`RemoteDataset` in the :data:`DATASETS` registry. :func:`download_dataset`
streams the file to a temporary folder inside the data root, checks the archive's SHA-256 or MD5 where one
is known, unpacks a zip archive (refusing members that would land outside the folder: absolute paths,
``..``, symbolic links), checks every file against the dataset's SHA-256 manifest where there is one, and
only then renames the result to ``<data root>/<folder>``. An existing folder is never replaced unless
``force`` is given. Errors name the URL or file and give the expected and the actual checksum.

Registered datasets:

* ``busi``: the authors' release ``Dataset_BUSI.zip`` (layout ``Dataset_BUSI_with_GT/<class>/...``). No
  checksum of the zip is published, so every one of its 1,578 files is checked against
  ``manifests/busi_sha256.csv`` (the SHA-256 of each file of the public release); the class folders end
  up in ``<data root>/busi/<class>/``.
* ``breastmnist``: MedMNIST v2's ``breastmnist.npz`` (28 x 28) from Zenodo, checked by the MD5 the
  MedMNIST authors publish; stored as ``<data root>/breastmnist/breastmnist.npz``.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import stat
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

from breastdx.data.checksum import sha256_file
from breastdx.data.fetch import CHUNK, DownloadError, check_digest, fetch_url, writing_into
from breastdx.registry import Registry

logger = logging.getLogger(__name__)

MAX_EXTRACTED_BYTES = 20 * (1 << 30)
"""Largest total size a zip archive may unpack to (a guard against zip bombs)."""

IGNORED_NAMES = ("__MACOSX", "Thumbs.db", "desktop.ini")
"""Archive entries that are neither data nor an error (besides names starting with ``.``)."""


@dataclass(frozen=True)
class RemoteDataset:
    """Where a dataset is published and how to check it.

    Attributes:
        name: Registry name (``breastdx data download <name>``).
        url: Public address of the archive or file.
        folder: Folder below the data root that receives the data.
        citation: The paper to cite.
        licence: The licence as the authors state it.
        archive_sha256: SHA-256 of the downloaded file, or None when none is published.
        archive_md5: MD5 of the downloaded file (as some publishers give), or None.
        archive_root: Folder inside the zip archive whose content becomes ``folder`` (None: the archive's
            top level).
        manifest: Per-file SHA-256 manifest checked after unpacking: the name of a CSV in
            ``breastdx/data/manifests`` or an absolute path; rows ``file,sha256`` with ``file`` the path
            inside the archive; lines starting with ``#`` are comments.
        filename: For a single file that is not an archive: its name inside ``folder``.
    """

    name: str
    url: str
    folder: str
    citation: str
    licence: str
    archive_sha256: str | None = None
    archive_md5: str | None = None
    archive_root: str | None = None
    manifest: str | None = None
    filename: str | None = None


DATASETS: Registry[RemoteDataset] = Registry("dataset")
"""Datasets that :func:`download_dataset` can fetch."""


def _publish(spec: RemoteDataset) -> None:
    DATASETS.register(spec.name)(spec)


_publish(RemoteDataset(
    name="busi",
    url="https://scholar.cu.edu.eg/Dataset_BUSI.zip",
    folder="busi",
    citation=("Al-Dhabyani W., Gomaa M., Khaled H., Fahmy A. Dataset of breast ultrasound images. "
              "Data in Brief 28 (2020) 104863. doi:10.1016/j.dib.2019.104863"),
    licence="CC BY 4.0",
    archive_root="Dataset_BUSI_with_GT",
    manifest="busi_sha256.csv",
))

_publish(RemoteDataset(
    name="breastmnist",
    url="https://zenodo.org/records/10519652/files/breastmnist.npz",
    folder="breastmnist",
    citation=("Yang J. et al. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical "
              "image classification. Scientific Data 10, 41 (2023). doi:10.1038/s41597-022-01721-8"),
    licence="CC BY 4.0",
    archive_md5="750601b1f35ba3300ea97c75c52ff8f6",
    filename="breastmnist.npz",
))


def download_dataset(name: str, data_root: str | Path, url: str | None = None, force: bool = False,
                     progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download, verify and unpack the registered dataset ``name`` into ``<data_root>/<folder>``.

    Args:
        name: A name in :data:`DATASETS` (``"busi"``, ``"breastmnist"``).
        data_root: The data root; created when missing.
        url: Another address of the same file (a mirror, or a ``file://`` URL); the checksums still apply.
        force: Replace an existing ``<data_root>/<folder>``.
        progress: Called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.

    Returns:
        The dataset's folder.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message lists the choices).
        DownloadError: If the folder exists (without ``force``), the download fails, a checksum differs
            (expected and actual given), the archive is invalid or unsafe, or files are missing, extra or
            altered with respect to the manifest.
    """
    return download(DATASETS.get(name), data_root, url=url, force=force, progress=progress)


def download(spec: RemoteDataset, data_root: str | Path, url: str | None = None, force: bool = False,
             progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download, verify and unpack the dataset ``spec`` describes (see :func:`download_dataset`)."""
    data_root = Path(data_root)
    dest = data_root / spec.folder
    url = url or spec.url
    _refuse_existing(dest, force)
    manifest = load_manifest(spec.manifest) if spec.manifest else None
    with writing_into(data_root):
        data_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.download-", dir=data_root))
    try:
        name = spec.filename or Path(urllib.parse.urlparse(url).path).name or f"{spec.name}.download"
        fetched = work / "download" / name
        fetched.parent.mkdir()
        sha256, md5 = fetch_url(url, fetched, progress)
        check_digest(url, "SHA-256", spec.archive_sha256, sha256)
        check_digest(url, "MD5", spec.archive_md5, md5)
        staged = work / "staged"
        if spec.filename:
            staged.mkdir()
            os.replace(fetched, staged / spec.filename)
            if manifest is not None:
                _verify_or_raise(staged, manifest, url)
        else:
            unpacked = work / "unpacked"
            safe_extract(fetched, unpacked, url)
            if manifest is not None:
                _verify_or_raise(unpacked, manifest, url)
            root = unpacked / spec.archive_root if spec.archive_root else unpacked
            if not root.is_dir():
                top = sorted(p.name for p in unpacked.iterdir())
                raise DownloadError(f"{url}: the archive has no folder {spec.archive_root!r}; its top level "
                                    f"holds {', '.join(top) or 'nothing'}.")
            os.replace(root, staged)
        _move_into_place(staged, dest, force)
        logger.info("%s: downloaded and verified into %s", spec.name, dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _refuse_existing(dest: Path, force: bool) -> None:
    if dest.exists() and not force:
        raise DownloadError(f"{dest} already exists; it is not replaced. Remove it, or download again with "
                            f"force (--force) to replace it.")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and len(parts[0]) >= 2 and parts[0][1] == ":"):
        return f"{info.filename!r}: absolute path"
    if ".." in parts:
        return f"{info.filename!r}: path leaves the archive's folder ('..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"{info.filename!r}: symbolic link"
    return None


def safe_extract(archive: Path, dest: Path, source: str | None = None) -> list[Path]:
    """Unpack a zip archive into ``dest``, refusing members that would land outside it.

    Every member is checked before anything is written: absolute paths, drive letters, ``..``
    components and symbolic links are refused, and so is an archive that would unpack to more than
    :data:`MAX_EXTRACTED_BYTES`.

    Args:
        archive: The zip file.
        dest: Folder to unpack into (created).
        source: Where the archive came from, for messages (defaults to the archive's path).

    Returns:
        The files written.

    Raises:
        DownloadError: If the file is not a valid zip archive, a member is unsafe, or a member's data is
            corrupt (CRC error); the message lists every unsafe member.
    """
    where = source or str(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DownloadError(f"{where}: not a valid zip archive ({err}).") from None
    written: list[Path] = []
    with zf:
        infos = zf.infolist()
        problems = [p for p in (_member_problem(i) for i in infos) if p]
        if problems:
            raise DownloadError(f"{where}: refusing to unpack the archive: unsafe member paths.", problems)
        total = sum(i.file_size for i in infos)
        if total > MAX_EXTRACTED_BYTES:
            raise DownloadError(f"{where}: the archive would unpack to {total:,} bytes, over the limit of "
                                f"{MAX_EXTRACTED_BYTES:,}.")
        dest.mkdir(parents=True, exist_ok=True)
        base = dest.resolve()
        for info in infos:
            target = (dest / info.filename.replace("\\", "/")).resolve()
            if target != base and base not in target.parents:  # belt and braces after the checks above
                raise DownloadError(f"{where}: member {info.filename!r} would be written outside {dest}.")
            try:
                (target if info.is_dir() else target.parent).mkdir(parents=True, exist_ok=True)
            except OSError as err:  # a member that is a file where another needs a folder
                raise DownloadError(f"{where}: member {info.filename!r} cannot be unpacked ({err.strerror or err}): "
                                    f"the archive holds a file and a folder of the same name?") from None
            if info.is_dir():
                continue
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
            except (zipfile.BadZipFile, EOFError) as err:
                raise DownloadError(f"{where}: member {info.filename!r} is corrupt ({err}).") from None
            except OSError as err:  # zipfile's CRC error is a BadZipFile; this is the disk or the name
                raise DownloadError(f"{where}: member {info.filename!r} cannot be written ({err.strerror or err})."
                                    ) from None
            written.append(target)
    return written


def load_manifest(manifest: str | Path) -> dict[str, str]:
    """Read a ``file,sha256`` manifest: a name in ``breastdx/data/manifests`` or an absolute path.

    Returns:
        Path inside the archive to lower-case hex SHA-256.

    Raises:
        DownloadError: If the manifest is missing or malformed (the message names it).
    """
    p = Path(manifest)
    if not p.is_absolute():
        p = Path(__file__).resolve().parent / "manifests" / p
    if not p.is_file():
        raise DownloadError(f"{p}: checksum manifest not found (the breastdx installation is incomplete: "
                            f"it should ship breastdx/data/manifests/{Path(manifest).name}).")
    lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    rows = list(csv.reader(lines))
    problems = []
    if not rows or [c.strip() for c in rows[0]] != ["file", "sha256"]:
        raise DownloadError(f"{p}: not a checksum manifest; expected the header 'file,sha256'.")
    out: dict[str, str] = {}
    for k, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or len(row[1].strip()) != 64:
            problems.append(f"row {k}: expected 'path,<64 hex digits>', got {row!r}")
            continue
        out[row[0]] = row[1].strip().lower()
    if problems:
        raise DownloadError(f"{p}: malformed checksum manifest.", problems)
    return out


def _ignored(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") or part in IGNORED_NAMES for part in rel.parts)


def verify_files(root: str | Path, manifest: Mapping[str, str], extras_under: str | None = None) -> list[str]:
    """Compare the files under ``root`` with a SHA-256 manifest.

    Args:
        root: Folder the manifest's paths are relative to.
        manifest: Relative path (``/``-separated) to hex SHA-256.
        extras_under: Report files below this relative folder that the manifest does not list (None: the
            common top folder of the manifest's paths, or all of ``root`` when there is none). Hidden
            files and ``__MACOSX``, ``Thumbs.db``, ``desktop.ini`` are ignored.

    Returns:
        One line per problem (missing file, altered file with expected and actual SHA-256, extra file);
        empty when everything matches.
    """
    root = Path(root)
    problems = []
    for rel, expected in sorted(manifest.items()):
        f = root / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
            continue
        actual = sha256_file(f)
        if actual != expected:
            problems.append(f"{rel}: SHA-256 mismatch: expected {expected}, got {actual}")
    if extras_under is None:
        tops = {PurePosixPath(r).parts[0] for r in manifest if len(PurePosixPath(r).parts) > 1}
        extras_under = tops.pop() if len(tops) == 1 else ""
    base = root / extras_under if extras_under else root
    if base.is_dir():
        for f in sorted(base.rglob("*")):
            rel = PurePosixPath(f.relative_to(root).as_posix())
            if f.is_file() and not _ignored(rel) and str(rel) not in manifest:
                problems.append(f"{rel}: not in the manifest (unexpected file)")
    return problems


def _verify_or_raise(root: Path, manifest: Mapping[str, str], url: str) -> None:
    problems = verify_files(root, manifest)
    if problems:
        raise DownloadError(f"{url}: the downloaded files do not match the published checksums "
                            f"({len(problems)} problem(s)); nothing was installed.", problems)


def _move_into_place(staged: Path, dest: Path, force: bool) -> None:
    if not dest.exists():
        os.replace(staged, dest)
        return
    _refuse_existing(dest, force)
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.replace(dest, old)
    try:
        os.replace(staged, dest)
    except OSError:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def downloadable_names() -> list[str]:
    """Every dataset ``breastdx data download`` knows: the registered archives and PatchCamelyon's file set."""
    return sorted([*DATASETS.names(), "pcam"])


def download_named(name: str, data_root: str | Path, url: str | None = None, force: bool = False,
                   progress: Callable[[int, int | None], None] | None = None, kept: list[str] | None = None) -> Path:
    """Download any dataset of :func:`downloadable_names` into the data root.

    ``pcam`` is several files (see :func:`breastdx.data.pcam.download_pcam`, where ``url`` is the base
    address, and ``kept`` gets the files already in place, kept unverified); the others are single archives of
    :data:`DATASETS`.

    Raises:
        UnknownNameError: If the name is unknown (the message lists the choices).
        DownloadError: As :func:`download_dataset`.
    """
    if name == "pcam":
        from breastdx.data.pcam import download_pcam

        return download_pcam(data_root, base_url=url, force=force, progress=progress, kept=kept)
    if name not in DATASETS:
        from breastdx.registry import unknown_name

        raise unknown_name("dataset", name, downloadable_names())
    return download_dataset(name, data_root, url=url, force=force, progress=progress)
