"""Decode untrusted image files in worker processes with a time and a memory limit.

A decoder bug must not take the caller down. pydicom 3.0's JPEG 2000 parameter reader, for one, loops forever
on a codestream holding a box of length 0, holding the GIL (``docs/upstream/pydicom-j2k-zero-length-box.md``):
in the service's own process that stops every request and the shutdown. A :class:`DecoderPool` runs
:func:`breastdx.data.images.read_image` / :func:`~breastdx.data.images.read_image_bytes` in ``workers`` child
processes (``python -m breastdx.data.decode_worker``). Each child has an address-space limit
(``resource.RLIMIT_AS``, where the system has it); a decode that overruns its wall time is killed with its
child, which is replaced on the next call, and the file is named as undecodable.

Nothing is unpickled: a request is a JSON header and the file's bytes; an answer is a JSON header and the raw
``uint8`` pixels, so a child that a malformed file took over cannot make the parent run code.

The cost is a process start per worker (about a second, once) and a copy of the file and of the decoded
pixels through a pipe per image (``benchmarks/bench_decode_worker.py`` prints it).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

DECODE_TIMEOUT_S = 20.0
"""Default wall time a decode may take, in seconds: a 40-megapixel 16-bit DICOM decodes in about 1 s."""

DECODE_MEMORY_BYTES = 3 * 2**30
"""Default address-space limit of a worker process, in bytes (``RLIMIT_AS``): several times what the largest
accepted image needs once decoded, and far below what a decoder gone wrong would take."""

RECYCLE_BYTES = 512 * 2**20
"""A worker whose peak resident memory passed this many bytes answers, then exits and is replaced: the memory a
large image took is given back to the system (an allocator keeps freed memory for the process)."""

ANSWER_HEAD_BYTES = 1 << 20
"""Largest JSON header of a worker's answer that the parent reads, in bytes (a dozen fields need under 2 KiB)."""

_HEAD = struct.Struct("!IQ")  # header length, payload length


class _Oversized(Exception):
    """An answer announcing more bytes than the parent reads: ``(header bytes, payload bytes)``."""


class DecoderPool:
    """Worker processes that decode image files and uploads, each under a time and a memory limit.

    Thread-safe: each call borrows an idle worker (waiting for one when all are busy). Use it as a context
    manager, or call :meth:`close`.

    Args:
        workers: Child processes (>= 1), started on first use.
        timeout_s: Wall time allowed per decode, in seconds (> 0).
        memory_bytes: Address-space limit per child, in bytes; None for no limit.

    Raises:
        ValueError: If ``workers`` < 1 or ``timeout_s`` <= 0.
    """

    def __init__(self, workers: int = 1, timeout_s: float = DECODE_TIMEOUT_S,
                 memory_bytes: int | None = DECODE_MEMORY_BYTES) -> None:
        if isinstance(workers, bool) or int(workers) < 1:
            raise ValueError(f"workers must be an integer >= 1. Got {workers!r} instead.")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0. Got {timeout_s!r} instead.")
        self.timeout_s = float(timeout_s)
        self.memory_bytes = memory_bytes
        self._idle: queue.Queue[subprocess.Popen | None] = queue.Queue()
        for _ in range(int(workers)):
            self._idle.put(None)  # a slot: the process starts when first needed
        self._all: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------------------------------ public
    def read_image(self, path: str | Path, mode: str = "gray", max_pixels: int | None = None) -> Any:
        """:func:`breastdx.data.images.read_image` in a worker process.

        Raises:
            ValueError: If ``mode`` is not ``"gray"`` or ``"rgb"``.
            ImageReadError: As :func:`~breastdx.data.images.read_image`, and when decoding the file overran the
                time or memory limit or crashed its worker (the message names the file as undecodable). No message
                quotes the file's content: a decoder's unforeseen exception is named by its type alone.
        """
        return self._call({"path": str(path), "name": str(path), "mode": mode, "max_pixels": max_pixels}, b"")

    def read_image_bytes(self, data: bytes, name: str, mode: str = "gray", max_pixels: int | None = None,
                         max_side: int | None = None, frame: int | None = None) -> Any:
        """:func:`breastdx.data.images.read_image_bytes` in a worker process (the bytes go through a pipe, never
        to disk); with ``max_side``, decoded reduced so that only the small image comes back.

        Raises:
            ValueError: If ``mode`` is not ``"gray"`` or ``"rgb"``.
            ImageReadError: As :meth:`read_image`; the message names ``name``.
        """
        return self._call({"path": None, "name": name, "mode": mode, "max_pixels": max_pixels,
                           "max_side": max_side, "frame": frame}, bytes(data))

    def close(self) -> None:
        """Stop every worker at once (a decode in progress ends with an :class:`ImageReadError`)."""
        with self._lock:
            self._closed = True
            procs = list(self._all)
            self._all.clear()
        for proc in procs:
            _kill(proc)

    def __enter__(self) -> "DecoderPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ inner
    def _start(self) -> subprocess.Popen:
        import breastdx

        # the child imports this breastdx, wherever it came from (an installed copy, or a source tree on sys.path)
        here = str(Path(breastdx.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        args = [sys.executable, "-m", "breastdx.data.decode_worker", str(self.memory_bytes or 0)]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        for stream in (proc.stdin, proc.stdout):
            _widen_pipe(stream)
        with self._lock:
            if self._closed:
                _kill(proc)
                raise _closed_error()
            self._all.add(proc)
        return proc

    def _call(self, header: dict[str, Any], data: bytes) -> Any:
        from breastdx.data.images import MAX_PIXELS, MODES, ImageReadError

        if header["mode"] not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {header['mode']!r}.")
        header["max_pixels"] = int(MAX_PIXELS if header["max_pixels"] is None else header["max_pixels"])
        name = header["name"]
        if self._closed:
            raise _closed_error()
        proc = self._idle.get()
        healthy = False
        try:
            if proc is None or proc.poll() is not None:
                proc = self._start()
            start = time.monotonic()
            most = 3 * header["max_pixels"]  # uint8 RGB of the largest image accepted
            try:
                _send(proc.stdin, header, data)
                answer, payload = _receive(proc.stdout, start + self.timeout_s, most)
                healthy = not answer.get("recycle")  # a worker that grew large is replaced: its memory given back
            except _Oversized as big:  # a worker a malformed file took over: not read, or it takes the memory
                raise ImageReadError(
                    f"{name}: undecodable: its decoder answered a header of {big.args[0]:,} bytes and "
                    f"{big.args[1]:,} bytes of pixels, over the {ANSWER_HEAD_BYTES:,} and {most:,} expected at most "
                    f"(an image of at most {header['max_pixels']:,} pixels, 8-bit RGB); the worker was stopped."
                ) from None
            except TimeoutError:
                raise ImageReadError(
                    f"{name}: undecodable: decoding did not finish within {self.timeout_s:g} s, so it was stopped "
                    f"(a malformed file can make a decoder loop forever).") from None
            except (EOFError, OSError, ValueError):
                if self._closed:
                    raise _closed_error() from None
                code = proc.poll()
                raise ImageReadError(
                    f"{name}: undecodable: the decoder stopped while reading it (exit status {code}; a malformed "
                    f"file can crash a decoder or exhaust the memory limit of "
                    f"{(self.memory_bytes or 0) / 2**30:.1f} GiB).") from None
        finally:
            if not healthy and proc is not None:
                self._drop(proc)
                proc = None
            self._idle.put(proc)
        return _answer_to_record(answer, payload)

    def _drop(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._all.discard(proc)
        _kill(proc)


def _closed_error() -> Exception:
    from breastdx.data.images import ImageReadError

    return ImageReadError("The image decoder is shut down (the program is stopping).")


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):  # pragma: no cover - already gone, or a zombie
        pass
    for f in (proc.stdin, proc.stdout):
        try:
            f.close()
        except OSError:  # pragma: no cover
            pass


# ---------------------------------------------------------------------------------------------- protocol


def _widen_pipe(stream: BinaryIO) -> None:
    """Give a pipe a 4 MiB buffer (or 1 MiB, the usual most for a user) where Linux allows it (``F_SETPIPE_SZ``):
    fewer switches between the processes per image than with the default 64 KiB (a 1024 x 1024 16-bit DICOM:
    about 11 ms of overhead instead of 25). Elsewhere, or when refused, the pipe keeps its size."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        return
    for size in (4 << 20, 1 << 20):
        try:
            fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
            return
        except OSError:
            continue


def _send(stream: BinaryIO, header: dict[str, Any], payload: bytes) -> None:
    head = json.dumps(header).encode()
    stream.write(_HEAD.pack(len(head), len(payload)))
    stream.write(head)
    stream.write(payload)
    stream.flush()


def _read_exactly(stream: BinaryIO, n: int, deadline: float | None) -> bytes:
    fd = stream.fileno()
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 4 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _receive(stream: BinaryIO, deadline: float | None = None,
             max_payload: int | None = None) -> tuple[dict[str, Any], bytes]:
    """One message: its JSON header and payload. With ``max_payload``, a header over :data:`ANSWER_HEAD_BYTES` or a
    payload over ``max_payload`` bytes raises :class:`_Oversized` before either is read."""
    head_len, payload_len = _HEAD.unpack(_read_exactly(stream, _HEAD.size, deadline))
    if max_payload is not None and (head_len > ANSWER_HEAD_BYTES or payload_len > max_payload):
        raise _Oversized(head_len, payload_len)
    header = json.loads(_read_exactly(stream, head_len, deadline))
    return header, _read_exactly(stream, payload_len, deadline)


def _answer_to_record(answer: dict[str, Any], payload: bytes) -> Any:
    import numpy as np

    from breastdx.data.images import ImageReadError, ImageRecord

    if answer.get("error") is not None:
        raise (ValueError if answer.get("kind") == "ValueError" else ImageReadError)(str(answer["error"]))
    shape = tuple(int(s) for s in answer["shape"])
    if len(shape) not in (2, 3) or len(payload) != int(np.prod(shape)):
        raise ImageReadError(f"{answer.get('path')}: the decoder answered pixels that do not match their shape.")
    array = np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()
    spacing = answer.get("spacing_mm")
    full = answer.get("full_shape")
    return ImageRecord(array, Path(answer["path"]), None if spacing is None else (float(spacing[0]), float(spacing[1])),
                       str(answer["source_format"]), str(answer["source_mode"]),
                       None if full is None else (int(full[0]), int(full[1])),
                       None if answer.get("colourfulness") is None else float(answer["colourfulness"]),
                       str(answer.get("spacing_note") or ""),
                       None if answer.get("frame") is None else (int(answer["frame"][0]), int(answer["frame"][1])),
                       None if answer.get("brightness") is None else float(answer["brightness"]))


# ---------------------------------------------------------------------------------------------- the child


def resource_peak_bytes() -> int:
    """Peak resident memory of this process, in bytes (0 where the system does not say)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Have Linux kill this worker when its parent dies (``PR_SET_PDEATHSIG``): a worker looping in a decoder reads
    no more requests, so it would not notice the closed pipe and would spin on as an orphan. A thread watching
    the parent's id does the same elsewhere."""
    import signal

    parent = os.getppid()
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(memory_bytes: int) -> None:  # pragma: no cover - runs in the child (tested through DecoderPool)
    import numpy as np

    from breastdx.data.images import ImageReadError, read_image, read_image_bytes

    _die_with_parent()
    if memory_bytes > 0:
        try:
            import resource

            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        except (ImportError, ValueError, OSError) as e:  # no resource module (Windows), or refused
            logger.warning("decoder worker: no memory limit (%s)", e)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # whatever a library prints must not enter the answers
    while True:
        try:
            header, data = _receive(stdin)
        except EOFError:
            return
        try:
            if header["path"] is not None:
                rec = read_image(header["path"], mode=header["mode"], max_pixels=header["max_pixels"])
            else:
                rec = read_image_bytes(data, header["name"], mode=header["mode"], max_pixels=header["max_pixels"],
                                       max_side=header.get("max_side"), frame=header.get("frame"))
            array = np.ascontiguousarray(rec.array, dtype=np.uint8)
            answer = {"error": None, "shape": list(array.shape), "path": str(rec.path),
                      "spacing_mm": None if rec.spacing_mm is None else list(rec.spacing_mm),
                      "source_format": rec.source_format, "source_mode": rec.source_mode,
                      "full_shape": None if rec.full_shape is None else list(rec.full_shape),
                      "colourfulness": rec.colourfulness, "spacing_note": rec.spacing_note,
                      "frame": None if rec.frame is None else list(rec.frame), "brightness": rec.brightness}
            payload = array.tobytes()
        except ImageReadError as e:
            answer, payload = {"error": str(e), "kind": "ImageReadError"}, b""
        except ValueError as e:
            answer, payload = {"error": str(e), "kind": "ValueError"}, b""
        except MemoryError:
            answer, payload = {"error": f"{header['name']}: undecodable: decoding it needs more memory than the "
                                        f"limit of {memory_bytes / 2**30:.1f} GiB.", "kind": "ImageReadError"}, b""
        except Exception as e:  # noqa: BLE001 - a decoder failing in an unforeseen way: the file is undecodable
            # the type, not the text: a decoder's words may quote the file's content (a DICOM header's values)
            answer, payload = {"error": f"{header['name']}: undecodable ({type(e).__name__}).",
                               "kind": "ImageReadError"}, b""
        answer["recycle"] = resource_peak_bytes() > RECYCLE_BYTES
        _send(stdout, answer, payload)
        if answer["recycle"]:
            return


if __name__ == "__main__":  # pragma: no cover - the worker process
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
