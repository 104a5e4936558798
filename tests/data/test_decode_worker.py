"""Decoding in worker processes: the same images as in-process decoding, and a file that makes a decoder loop
or exhaust memory is named as undecodable within the limits, its worker replaced."""

from __future__ import annotations

import io
import threading
import time

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
