"""Throughput and peak memory of busi-cls prediction with Grad-CAM overlays over a folder of BUSI images.

Runs, in this process, what ``breastdx predict busi-cls FOLDER`` runs
(:func:`breastdx.inference.classifier.write_predictions`: read, resize, network, Grad-CAM of the reported
label, probabilities, overlay PNG at the original size, ``predictions.csv``) with the shipped model (or
``--model``), writing into a temporary folder, and prints one JSON line per repeat:

* images/s of the prediction (model loading excluded; reading, network, Grad-CAM and writing included);
* the same with the model loading;
* peak resident memory of this process (``ru_maxrss``, imports included);
* the naive notebook loop on the same images with the same weights (one image at a time, float32, eager
  PyTorch, PIL in, no Grad-CAM, no files) in a fresh process, and the ratio (with ``--repeat`` above 1 the two
  take turns going first: ``first``);
* the machine: CPU model, AVX2 / AVX-512 / AMX, torch's capability, threads, the dtype and backend used.

The issue's target: >= 15 images/s with Grad-CAM on 2 CPU cores.

Usage::

    python benchmarks/busi_cls_predict.py [--folder DATA/busi] [--model NAME_OR_DIR] [--threads 2]
        [--batch-size 32] [--workers 2] [--limit 0] [--no-gradcam] [--repeat 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from _child import scratch_folder
from _machine import machine_line, run_naive_child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    parser.add_argument("--folder", type=Path, default=default_root / "busi",
                        help="folder of images (searched recursively; *_mask files are skipped)")
    parser.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped busi-cls)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="reader / writer threads")
    parser.add_argument("--limit", type=int, default=0, help="use the first N images (0: all)")
    parser.add_argument("--no-gradcam", action="store_true", help="probabilities only")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the output folders")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"{args.folder}: no such folder; pass --folder or set BREASTDX_DATA.")

    import torch

    from breastdx.data.image_files import list_images
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.writers import write_predictions
    from breastdx.zoo import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = list_images([args.folder])
    if args.limit:
        paths = paths[:args.limit]
    with scratch_folder("busi_cls_predict_", args.keep) as tmp:
        for r in range(args.repeat):
            out = tmp / f"run{r}"
            out.mkdir()

            def naive_run(r: int = r) -> dict:
                return run_naive_child("classification", Path(resolve_model(args.model, "busi-cls")), paths,
                                       tmp / f"naive{r}")

            naive = naive_run() if r % 2 else None  # alternate which goes first
            t0 = time.perf_counter()
            predictor = ClassificationPredictor.from_dir(resolve_model(args.model, "busi-cls"), task="busi-cls",
                                                         batch_size=args.batch_size)
            load_s = time.perf_counter() - t0
            rows, failures, seconds = write_predictions(predictor, paths, out, gradcam=not args.no_gradcam,
                                                        workers=args.workers)
            naive = naive or naive_run()
            if r == 0:
                print(json.dumps(machine_line(dtype=predictor.dtype, backend=predictor.backend)))
            print(json.dumps({
                "run": r, "first": "naive loop" if r % 2 else "command", "folder": str(args.folder), "images": len(rows), "failures": len(failures),
                "model": predictor.meta["architecture"], "input_size": predictor.preprocessing.image_size,
                "tta": predictor.tta, "gradcam": not args.no_gradcam, "threads": torch.get_num_threads(),
                "batch_size": args.batch_size, "seconds": round(seconds, 2),
                "images_per_s": round(len(rows) / seconds, 1),
                "images_per_s_with_model_loading": round(len(rows) / (seconds + load_s), 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "naive_loop": naive, "ratio_to_naive_loop": round(len(rows) / seconds / naive["images_per_s"], 2),
            }), flush=True)


if __name__ == "__main__":
    main()
