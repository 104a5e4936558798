"""Streaming a URL to a file with its checksums, and the error every download raises.

The lowest layer of the downloaders: :mod:`breastdx.data.download` (registered archives) and
:func:`breastdx.data.pcam.download_pcam` (PatchCamelyon's file set) both call :func:`fetch_url` and
:func:`check_digest`, and neither imports the other for it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from breastdx.data.errors import DataError

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
"""Bytes read and written at a time."""

ALLOWED_SCHEMES = ("https", "http", "file")
"""URL schemes :func:`fetch_url` accepts."""


class DownloadError(DataError):
    """A download that failed or could not be verified; the message names the URL or file."""


def fetch_url(url: str, target: Path, progress: Callable[[int, int | None], None] | None = None,
              timeout: float = 60.0) -> tuple[str, str]:
    """Stream ``url`` into ``target``, computing its SHA-256 and MD5 on the way.

    Args:
        url: An ``https``, ``http`` or ``file`` URL.
        target: The file to write.
        progress: Called as ``progress(bytes_done, bytes_total_or_None)`` after each chunk.
        timeout: Seconds to wait for the server.

    Returns:
        ``(sha256, md5)`` as hex strings.

    Raises:
        DownloadError: For another scheme, or when the transfer fails or is cut short (fewer bytes than its
            ``Content-Length``, or a chunked transfer that ends early); the message names the URL.
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ALLOWED_SCHEMES:
        hint = (f" A local file is given as a URL: {Path(url).resolve().as_uri()}" if not scheme and Path(url).exists()
                else "")
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r}; expected one of {', '.join(ALLOWED_SCHEMES)}."
                            + hint)
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            logger.info("downloading %s (%s bytes)", url, total if total is not None else "unknown")
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except http.client.IncompleteRead as err:  # a chunked (or unsized) transfer that ended early
        raise DownloadError(f"{url}: download cut short: the connection ended after {done + len(err.partial)} bytes, "
                            f"in the middle of the file; nothing was installed. Download again.") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
        offline = isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError) \
            and scheme != "file"
        hint = (" The server could not be reached: the machine may be offline. Copy the file onto it another way "
                "and give its address with --url file:///path (the checksums still apply).") if offline else ""
        raise DownloadError(f"{url}: download failed ({type(err).__name__}: {err}).{hint}") from None
    if total is not None and done != total:
        raise DownloadError(f"{url}: download cut short: got {done} of {total} bytes.")
    return sha.hexdigest(), md5.hexdigest()


def check_digest(url: str, kind: str, expected: str | None, actual: str) -> None:
    """Compare a file's checksum with the published one (case-insensitive hex); None: nothing published.

    Args:
        url: Where the file came from, for the message.
        kind: The checksum's name ("SHA-256", "MD5").
        expected: The published hex digest, or None.
        actual: The digest of the file received.

    Raises:
        DownloadError: If they differ; the message gives both.
    """
    if expected is not None and expected.lower() != actual.lower():
        raise DownloadError(f"{url}: {kind} checksum mismatch: expected {expected.lower()}, got {actual}. "
                            f"The file is damaged or is not the published version; nothing was installed.")


@contextmanager
def writing_into(data_root: str | Path) -> Iterator[None]:
    """Make folders and temporary files in the data root inside this block: an OS error there (a read-only folder, a
    file where a folder is needed) is raised as a DownloadError said of the data root and the path refused, not as a
    raw error about a temporary name.

    Raises:
        DownloadError: For any OSError raised in the block.
    """
    try:
        yield
    except OSError as e:
        where = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else (e.strerror or str(e))
        raise DownloadError(f"Cannot write into the data root {data_root} ({where}); choose a folder you can write "
                            f"to (--data-dir).") from None
