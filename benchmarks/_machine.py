"""Where a benchmark ran, and the naive notebook loops it is compared with in the same run.

Every speed figure names its machine: :func:`machine_line` gives the CPU model, its vector extensions (AVX2 /
AVX-512 / AMX), torch's CPU capability, whether bfloat16 is native, the usable cores and torch's thread count.

The naive loops are what a notebook does with the same weights: one image at a time, float32, eager
PyTorch, PIL in and out (read, resize, network, resize back, threshold, write a PNG). A benchmark prints
its figure, the naive loop's figure on the same images in the same run, and their ratio, because these
machines are shared and a figure alone says little.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def machine_line(**extra: Any) -> dict[str, Any]:
    """A JSON-ready description of this machine, plus ``extra`` (dtype, backend, threads used)."""
    from breastdx.runtime import machine_summary

    return {"machine": {**machine_summary(), **extra}}


def images_under(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` images below ``folder`` (BUSI ``*_mask`` files left out), spread evenly over the list."""
    from breastdx.data.image_files import list_images

    paths = list_images([folder])
    if limit and len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths


def _load_network(model_dir: Path):
    import json

    from safetensors.torch import load_file

    from breastdx.models.networks import build_network

    meta = json.loads((Path(model_dir) / "meta.json").read_text())
    network, _ = build_network(meta["architecture"], int(meta["in_channels"]), len(meta["class_names"]),
                               **meta["architecture_args"])
    network.load_state_dict(load_file(str(Path(model_dir) / meta["weights_file"])))
    return network.eval(), meta


def _timed_loop(one, paths: Sequence[Path], warmup: int) -> dict[str, float]:
    """``one(path)`` over ``paths``, timed after ``warmup`` untimed calls on the first paths."""
    import torch

    with torch.no_grad():
        for path in list(paths)[:warmup]:
            one(path)
        start = time.perf_counter()
        for path in paths:
            one(path)
    seconds = time.perf_counter() - start
    return {"images": len(paths), "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 1),
            "warmup_images_not_timed": int(warmup)}


def naive_segmentation_loop(model_dir: Path, paths: Sequence[Path], out_dir: Path,
                            warmup: int = 0) -> dict[str, float]:
    """The notebook loop for a segmentation model: per image, PIL read -> resize -> float32 network ->
    softmax -> resize back -> threshold -> PIL write of the mask. Model loading is not timed, nor the first
    ``warmup`` images (0: the first call's one-off costs are counted, as a notebook pays them)."""
    import torch
    from PIL import Image

    network, meta = _load_network(model_dir)
    size = int(meta["preprocessing"]["image_size"])
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> None:
        image = Image.open(path).convert("L")
        x = torch.from_numpy(np.asarray(image.resize((size, size), Image.BILINEAR), np.float32) / 255.0)
        prob = torch.softmax(network(x[None, None]), dim=1)[0, -1].numpy()
        back = Image.fromarray(prob).resize(image.size, Image.BILINEAR)
        Image.fromarray((np.asarray(back) >= 0.5).astype(np.uint8) * 255).save(out_dir / f"{path.stem}.png")

    return _timed_loop(one, paths, warmup)


def naive_classification_loop(model_dir: Path, paths: Sequence[Path], warmup: int = 0) -> dict[str, float]:
    """The notebook loop for a classifier: per image, PIL read -> resize -> float32 network -> softmax (no
    Grad-CAM, no files written). Model loading is not timed, nor the first ``warmup`` images."""
    import torch
    from PIL import Image

    network, meta = _load_network(model_dir)
    size = int(meta["preprocessing"]["image_size"])
    mode = "RGB" if int(meta["in_channels"]) == 3 else "L"

    def one(path: Path) -> None:
        a = np.asarray(Image.open(path).convert(mode).resize((size, size), Image.BILINEAR), np.float32) / 255.0
        x = torch.from_numpy(a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None].copy())
        torch.softmax(network(x), dim=1)

    return _timed_loop(one, paths, warmup)


def run_naive_child(kind: str, model_dir: Path, paths: Sequence[Path], out_dir: Path,
                    warmup: int = 0) -> dict[str, Any]:
    """Run a naive loop in a fresh process (imports, model loading and the loop, as a notebook would) and
    measure it end to end; ``kind`` is ``"segmentation"`` or ``"classification"``; ``warmup`` images are run
    untimed before the loop (they count in the end-to-end time)."""
    import json
    import subprocess
    import sys

    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / "paths.txt"
    listing.write_text("\n".join(str(p) for p in paths))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, kind, str(model_dir), str(listing), str(out_dir / "out"),
                           str(int(warmup))], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"naive loop failed: {proc.stderr.strip().splitlines()[-3:]}")
    loop = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**loop, "wall_s": round(wall, 2), "images_per_s_end_to_end": round(len(paths) / wall, 1)}


if __name__ == "__main__":  # python benchmarks/_machine.py KIND MODEL_DIR PATH_LIST OUT_DIR [WARMUP]
    import json
    import sys

    kind, model, listing, out = sys.argv[1:5]
    warm = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    files = [Path(p) for p in Path(listing).read_text().splitlines() if p]
    if kind == "segmentation":
        print(json.dumps(naive_segmentation_loop(Path(model), files, Path(out), warm)))
    else:
        print(json.dumps(naive_classification_loop(Path(model), files, warm)))
