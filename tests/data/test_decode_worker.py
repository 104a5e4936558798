"""Decoding in worker processes: the same images as in-process decoding, and a file that makes a decoder loop
or exhaust memory is named as undecodable within the limits, its worker replaced."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastdx.data.decode_worker import DecoderPool
from breastdx.data.images import ImageReadError, read_image, read_image_bytes


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def pool():
    with DecoderPool(workers=1, timeout_s=3) as p:
        yield p


def test_same_images_as_in_process(pool, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = _png(rgb)
    for mode in ("gray", "rgb"):
        got = pool.read_image_bytes(data, "case.png", mode=mode)
        ref = read_image_bytes(data, "case.png", mode=mode)
        np.testing.assert_array_equal(got.array, ref.array)
        assert (str(got.path), got.source_format, got.source_mode, got.spacing_mm) == ("case.png", "PNG", "RGB", None)
    (tmp_path / "case.png").write_bytes(data)
    got, ref = pool.read_image(tmp_path / "case.png", mode="rgb"), read_image(tmp_path / "case.png", mode="rgb")
    np.testing.assert_array_equal(got.array, ref.array)
    assert got.path == ref.path and got.array.flags.writeable


def test_errors_are_those_of_the_reader(pool, tmp_path):
    with pytest.raises(ImageReadError, match=r"notes.png: not an image"):
        pool.read_image_bytes(b"hello, world", "notes.png")
    with pytest.raises(ImageReadError, match=r"over the limit of 100"):
        pool.read_image_bytes(_png(np.zeros((20, 20), np.uint8)), "big.png", max_pixels=100)
    with pytest.raises(ImageReadError, match="no such file"):
        pool.read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="mode must be one of"):
        pool.read_image_bytes(b"", "x.png", mode="cmyk")


def test_a_decoder_that_loops_is_stopped_and_replaced(pool, j2k_zero_box_dicom):
    start = time.monotonic()
    with pytest.raises(ImageReadError, match=r"zero_box_j2k.dcm: undecodable: decoding did not finish within 3 s"):
        pool.read_image(j2k_zero_box_dicom)
    assert time.monotonic() - start < 10
    with pytest.raises(ImageReadError, match=r"upload.dcm: undecodable"):
        pool.read_image_bytes(j2k_zero_box_dicom.read_bytes(), "upload.dcm")
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.testing.assert_array_equal(pool.read_image_bytes(_png(image), "after.png").array, image)


def test_memory_limit_names_the_file_and_the_worker_is_replaced():
    big = _png(np.zeros((6000, 6000, 3), np.uint8))  # 108 MB once decoded, more while converted
    with DecoderPool(workers=1, timeout_s=30, memory_bytes=300 * 2**20) as limited:
        with pytest.raises(ImageReadError, match=r"big.png: "):
            limited.read_image_bytes(big, "big.png", mode="rgb")
        small = np.full((5, 7), 9, np.uint8)
        np.testing.assert_array_equal(limited.read_image_bytes(_png(small), "small.png").array, small)


def test_close_ends_a_decode_in_progress_at_once(j2k_zero_box_dicom):
    pool = DecoderPool(workers=1, timeout_s=60)
    errors: list[Exception] = []

    def decode():
        try:
            pool.read_image(j2k_zero_box_dicom)
        except ImageReadError as e:
            errors.append(e)

    thread = threading.Thread(target=decode)
    thread.start()
    time.sleep(1.0)
    start = time.monotonic()
    pool.close()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - start < 5
    assert len(errors) == 1 and "shut down" in str(errors[0])
    with pytest.raises(ImageReadError, match="shut down"):
        pool.read_image(j2k_zero_box_dicom)


def test_bad_arguments():
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        DecoderPool(workers=0)
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        DecoderPool(timeout_s=0)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_looping_worker_dies_with_its_parent(j2k_zero_box_dicom, tmp_path):
    """A worker spinning in a decoder reads no more requests: it must not outlive a parent killed with SIGKILL."""
    import os
    import signal
    import subprocess
    import sys

    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", f"""
import threading, time
from breastdx.data.decode_worker import DecoderPool
pool = DecoderPool(timeout_s=600)
threading.Thread(target=pool.read_image, args=({str(j2k_zero_box_dicom)!r},), daemon=True).start()
while not pool._all:
    time.sleep(0.05)
open({str(pid_file)!r}, "w").write(str(next(iter(pool._all)).pid))
time.sleep(600)
"""])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    time.sleep(1.0)  # now looping in pydicom
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{worker}/stat") as f:  # a zombie waiting for init to reap it is gone too
            if f.read().split(") ", 1)[1].startswith("Z"):
                return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the decoder worker outlived its parent")


def test_an_answer_announcing_more_pixels_than_an_image_holds_is_not_read(monkeypatch):
    """A worker that a malformed file took over could announce and send terabytes: the parent refuses the answer
    from its length alone and stops the worker, instead of reading it into memory."""
    import subprocess
    import sys

    fake = ("import struct, sys, time; sys.stdin.buffer.read(1); "
            "sys.stdout.buffer.write(struct.pack('!IQ', 2, 2 ** 40) + b'{}'); sys.stdout.flush(); time.sleep(60)")
    pool = DecoderPool(workers=1, timeout_s=30)

    def start(self):
        proc = subprocess.Popen([sys.executable, "-c", fake], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._all.add(proc)
        return proc

    monkeypatch.setattr(DecoderPool, "_start", start)
    began = time.monotonic()
    with pool, pytest.raises(ImageReadError) as err:
        pool.read_image_bytes(_png(np.zeros((3, 4), dtype=np.uint8)), "huge.png", max_pixels=1000)
    assert time.monotonic() - began < 10
    assert str(err.value).startswith("huge.png: undecodable: its decoder answered")
    assert "1,099,511,627,776 bytes of pixels, over the 1,048,576 and 3,000 expected at most" in str(err.value)
    assert not pool._all  # the worker was stopped
