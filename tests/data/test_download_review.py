"""Downloads that fail part way, from a local server: each is refused with a message naming the URL, and nothing
(not even a temporary file) is left in the data root."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from breastdx.data.download import DATASETS, DownloadError, download


def _serve_once(response: bytes) -> str:
    """A one-request HTTP server on localhost that answers ``response`` (raw bytes) and closes the connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(response)

    threading.Thread(target=answer, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/breastmnist.npz"


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.mark.parametrize("response, said", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n100\r\nabc",
     r"download cut short: the connection ended after 1[69] bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc", r"download cut short: got 3 of 1000 bytes"),
])
def test_a_transfer_cut_short_is_refused_and_leaves_nothing(tmp_path, response, said):
    """A chunked transfer that ended early raised http.client.IncompleteRead, which is no OSError: a traceback."""
    url = _serve_once(response)
    with pytest.raises(DownloadError, match=said) as info:
        download(DATASETS.get("breastmnist"), tmp_path / "data", url=url)
    assert str(info.value).startswith(url)
    assert _entries(tmp_path / "data") == []


def test_pcam_into_a_data_root_it_cannot_write_says_so(tmp_path, monkeypatch):
    """download_pcam let the raw OSError through: '[Errno 17] File exists: .../pcam', no word of the data root."""
    import tempfile

    from breastdx.data.pcam import download_pcam

    (tmp_path / "pcam").write_text("a file where the pcam folder goes")
    with pytest.raises(DownloadError, match=rf"^Cannot write into the data root {tmp_path} \(File exists: "
                                            rf"{tmp_path / 'pcam'}\); choose a folder you can write to"):
        download_pcam(tmp_path, base_url=(tmp_path / "mirror").as_uri(), splits=("test",))

    def read_only(*args, **kwargs):  # as on a read-only folder (these tests may run as root, who writes anyway)
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    root = tmp_path / "other"
    with pytest.raises(DownloadError, match=rf"^Cannot write into the data root {root} \(Permission denied: "
                                            rf"{root / 'pcam'}\)"):
        download_pcam(root, base_url=(tmp_path / "mirror").as_uri(), splits=("test",))
