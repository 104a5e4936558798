"""Where prediction time goes: each shipped network's GFLOPs, achieved GFLOP/s and share of the machine's peak,
and the stages of ``breastdx predict busi-seg``.

Prints JSON lines:

* the machine (CPU model, AVX2 / AVX-512 / AMX, torch's capability, threads);
* the float32 matmul peak measured here (2048 x 2048, torch, all threads): the physical limit the networks
  are compared with;
* per shipped image network (busi-seg, busi-cls, breastmnist, breastmnist-single, pcam, idc, breakhis, ...):
  GFLOP per image (torch's FLOP counter, one multiply-add = 2 FLOP), images/s and GFLOP/s at batch 8 in eager
  PyTorch float32 and in ONNX Runtime float32, and GFLOP/s as a share of the matmul peak; where the CPU computes bfloat16 natively (AMX or AVX512-BF16), also
  eager PyTorch under bfloat16 autocast, the column that tells whether ``--dtype auto`` should pick it here;
* the stages of busi-seg prediction on ``--images`` BUSI images, in ms per image, one thread, one after
  another: read (decode), resize, network (after one untimed batch), restore size, postprocessing, mask PNG,
  overlay PNG.

Usage::

    python benchmarks/where_time_goes.py [--folder DATA/busi] [--images 60] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def rate(fn, batch, seconds: float) -> float:
    """Calls of ``fn(batch)`` per second times the batch size, after one warm-up call."""
    fn(batch)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        fn(batch)
        n += batch.shape[0]
    return n / (time.perf_counter() - start)


def matmul_peak(seconds: float) -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048 ** 3 * n / (time.perf_counter() - start) / 1e9


def networks(seconds: float, peak: float, onnx_dir: Path) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from breastdx.inference.backends import NetworkRunner
    from breastdx.models.saved import read_meta
    from breastdx.runtime import bf16_native_cpu
    from breastdx.zoo import shipped_models

    for task, folder in sorted(shipped_models().items()):
        meta = read_meta(folder)
        if "image_size" not in meta.get("preprocessing", {}) or "in_channels" not in meta:
            continue  # the tabular model, and monuseg's windows (benchmarks/monuseg_predict.py)
        size, channels = int(meta["preprocessing"]["image_size"]), int(meta["in_channels"])
        x = torch.rand(8, channels, size, size)
        eager = NetworkRunner(meta, model_dir=folder, dtype="float32", backend="torch")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            eager.network(x[:1])
        gflop = counter.get_total_flops() / 1e9
        row = {"network": task, "architecture": meta["architecture"], "input": f"{channels}x{size}x{size}",
               "gflop_per_image": round(gflop, 3)}
        backends = [("torch", "torch", "float32"), ("onnxruntime", "onnxruntime", "float32")]
        if bf16_native_cpu():  # emulated, bfloat16 is many times slower: not worth timing
            backends.append(("torch_bfloat16", "torch", "bfloat16"))
        for name, backend, dtype in backends:
            runner = eager if name == "torch" else NetworkRunner(meta, model_dir=folder, dtype=dtype,
                                                                  backend=backend, onnx_dir=onnx_dir)
            images_per_s = rate(runner, x, seconds)
            row[name] = {"images_per_s": round(images_per_s, 1), "gflop_per_s": round(images_per_s * gflop, 1),
                         "share_of_matmul_peak": round(images_per_s * gflop / peak, 2)}
        print(json.dumps(row), flush=True)


def busi_seg_stages(folder: Path, n_images: int) -> None:
    import torch

    from _machine import images_under
    from breastdx.data.images import read_image
    from breastdx.data.transforms import restore_size
    from breastdx.visualize import write_mask_png, write_overlay_png
    from breastdx.inference.predictor import SegmentationPredictor
    from breastdx.zoo import resolve_model

    torch.set_num_threads(1)
    paths = images_under(folder, n_images)
    predictor = SegmentationPredictor.from_dir(resolve_model(None, "busi-seg"), batch_size=8)
    predictor.runner.set_threads(1)
    ms: dict[str, float] = {}

    def timed(stage, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        ms[stage] = ms.get(stage, 0.0) + 1000 * (time.perf_counter() - start) / len(paths)
        return out

    records = [timed("read", read_image, p, "gray") for p in paths]
    resized = [timed("resize", predictor.prepare, r.array) for r in records]
    probs = []
    predictor.predict_resized(predictor.preprocessing.to_array(np.stack(resized[:8])))  # warm-up, not timed
    for i in range(0, len(resized), 8):
        batch = predictor.preprocessing.to_array(np.stack(resized[i:i + 8]))
        probs.extend(timed("network (batch 8)", predictor.predict_resized, batch))
    out = Path(tempfile.mkdtemp(prefix="stages-"))
    for i, (rec, prob) in enumerate(zip(records, probs)):
        full = timed("restore size", lambda: restore_size(prob, tuple(rec.shape)))
        mask, _ = timed("postprocessing", predictor.postprocessing.apply, full)
        timed("mask PNG", write_mask_png, mask, out / f"{i}_mask.png")
        timed("overlay PNG", write_overlay_png, rec.array, mask, out / f"{i}_overlay.png")
    total = sum(ms.values())
    print(json.dumps({"busi_seg_stages_ms_per_image_one_thread": {k: round(v, 1) for k, v in ms.items()},
                      "total_ms": round(total, 1), "network_share": round(ms["network (batch 8)"] / total, 2),
                      "backend": predictor.backend, "images": len(paths)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    parser.add_argument("--folder", type=Path, default=default_root / "busi")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per figure")
    args = parser.parse_args()
    from _machine import machine_line

    print(json.dumps(machine_line()), flush=True)
    peak = matmul_peak(args.seconds)
    print(json.dumps({"float32_matmul_2048_gflop_per_s": round(peak, 1)}), flush=True)
    with tempfile.TemporaryDirectory(prefix="onnx-") as onnx_dir:
        networks(args.seconds, peak, Path(onnx_dir))
    busi_seg_stages(args.folder, args.images)


if __name__ == "__main__":
    main()
