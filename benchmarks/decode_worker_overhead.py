"""Per-image cost of decoding in a worker process (:class:`breastdx.data.decode_worker.DecoderPool`) against
decoding in the calling process, on the same bytes in the same run.

Images (synthetic, textured so that they compress like ultrasound): a 500 x 600 gray PNG (a BUSI-sized
image), a 1280 x 960 RGB JPEG and a 1024 x 1024 16-bit DICOM. Each is decoded ``--n`` times both ways; the
figure is the median per image and the difference is the worker's overhead (a copy of the file and of the
pixels through a pipe). The two ways alternate, decode by decode, so that a shared machine's noise falls on both
alike. The worker's start-up, paid once per pool, is printed apart.

Usage::

    python benchmarks/decode_worker_overhead.py [--n 40]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

import numpy as np
from PIL import Image

from _machine import machine_line


def _images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1024, 0:1280]
    base = (np.sin(x / 37.0) * np.cos(y / 23.0) * 60 + 128 + rng.normal(0, 12, x.shape)).clip(0, 255)
    out = {}
    buf = io.BytesIO()
    Image.fromarray(base[:500, :600].astype(np.uint8)).save(buf, "PNG")
    out["PNG 500x600 gray"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(np.stack([base[:960], base[:960] * 0.8, base[:960] * 0.6], -1).astype(np.uint8)).save(
        buf, "JPEG", quality=90)
    out["JPEG 1280x960 RGB"] = buf.getvalue()
    out["DICOM 1024x1024 16-bit"] = _dicom((base[:, :1024] * 16).astype(np.uint16))
    return out


def _dicom(arr: np.ndarray) -> bytes:
    """pydicom's example CT slice (16-bit MONOCHROME2, explicit VR) with ``arr`` as its pixels."""
    from pydicom import examples

    ds = examples.ct
    ds.preamble = bytes(128)  # the example's preamble is a TIFF header
    ds.Rows, ds.Columns = arr.shape
    ds.PixelData = arr.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _median_ms(fns: list, n: int) -> list[float]:
    """The median milliseconds of each of ``fns`` over ``n`` calls, the functions called in turn (interleaved)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, out in zip(fns, times):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="Decodes per image and way.")
    args = parser.parse_args()

    from breastdx.data.decode_worker import DecoderPool
    from breastdx.data.images import read_image_bytes

    images = _images()
    results = {}
    with DecoderPool(workers=1) as pool:
        t = time.perf_counter()
        pool.read_image_bytes(images["PNG 500x600 gray"], "warm.png")
        start_ms = (time.perf_counter() - t) * 1000
        for name, data in images.items():
            mode = "rgb" if "RGB" in name else "gray"
            pool.read_image_bytes(data, name, mode=mode)  # the codec's first-use imports, paid once
            inproc, worker = _median_ms([lambda: read_image_bytes(data, name, mode=mode),
                                         lambda: pool.read_image_bytes(data, name, mode=mode)], args.n)
            results[name] = {"bytes": len(data), "in_process_ms": round(inproc, 2), "worker_ms": round(worker, 2),
                             "overhead_ms": round(worker - inproc, 2)}
    print(json.dumps({**machine_line(), "worker_start_ms": round(start_ms, 1), "per_image": results}, indent=2))


if __name__ == "__main__":
    main()
