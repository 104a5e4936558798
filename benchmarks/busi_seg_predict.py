"""Throughput and peak memory of ``breastdx predict busi-seg`` against the naive notebook loop, same run.

Runs the command line in a fresh process (``python -m breastdx.cli predict busi-seg FOLDER``) with the
shipped model (or ``--model``) over ``--images`` BUSI images (120 by default, spread evenly over the data),
writing masks, overlays and ``predictions.csv`` into a temporary folder, and prints one JSON line per run:

* images/s end to end: the whole process, from interpreter start (imports, model loading) to exit;
* images/s of the prediction itself, as the command reports it (model loading, reading, network, writing);
* the child's CPU seconds and peak resident memory (``ru_maxrss``);
* the naive loop in a fresh process on the same images with the same weights (one image at a time, float32,
  eager PyTorch, PIL in and out, masks written, no overlays), end to end and loop only, and the ratios;
* the machine: CPU model, AVX2 / AVX-512 / AMX, torch's capability, threads, the dtype and backend used.

With ``--repeat`` above 1 the command and the naive loop take turns going first (``first`` in each line), so that
neither always runs on a machine the other has just warmed or loaded.

The issue's targets: >= 25 images/s end to end and >= 1.25 times the naive loop, on 2 CPU cores.

Usage::

    python benchmarks/busi_seg_predict.py [--folder DATA/busi] [--images 120] [--model NAME_OR_DIR]
        [--threads N] [--backend auto|torch|onnxruntime] [--dtype auto] [--batch-size 16] [--repeat 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from _child import read_rows, run_cli, scratch_folder
from _machine import images_under, machine_line, run_naive_child


def run_once(folder: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = ["predict", "busi-seg", str(folder), "--out", str(out), "--batch-size", str(args.batch_size),
           "--workers", str(args.workers), "--threads", str(args.threads), "--backend", args.backend,
           "--dtype", args.dtype]
    if args.model:
        cmd += ["--model", args.model]
    run = run_cli(cmd)
    n = len(read_rows(out / "predictions.csv"))
    text = (run.proc.stdout + run.proc.stderr).replace("\n", " ")
    reported = re.search(r"segmented in ([\d.]+) s \(([\d.]+) images/s", text)
    chosen = {k: (m.group(1) if (m := re.search(p, text)) else None)
              for k, p in (("dtype", r"inference in (\w+)"), ("backend", r": (\w+) backend \("))}
    return {
        "images": n,
        "exit_code": run.proc.returncode,
        "wall_s": round(run.wall_s, 2),
        "images_per_s_end_to_end": round(n / run.wall_s, 1),
        "images_per_s_reported": float(reported.group(2)) if reported else None,
        "cpu_s": round(run.cpu_s, 1),
        "peak_rss_mib": round(run.peak_rss_mib, 1),
        **chosen,
        "stderr_tail": run.stderr_tail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    parser.add_argument("--folder", type=Path, default=default_root / "busi",
                        help="folder of images (searched recursively; *_mask files are skipped)")
    parser.add_argument("--images", type=int, default=120, help="images used, spread evenly (0: all)")
    parser.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=0, help="network threads (0: every usable core)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="reader / writer threads")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the output folders")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"{args.folder}: no such folder; pass --folder or set BREASTDX_DATA.")
    from breastdx.zoo import resolve_model

    print(json.dumps(machine_line(threads_option=args.threads)))
    paths = images_under(args.folder, args.images)
    with scratch_folder("busi_seg_predict_", args.keep) as tmp:
        subset = tmp / "images"
        subset.mkdir()
        for i, p in enumerate(paths):  # links named uniquely, so that outputs do not collide
            os.symlink(p.resolve(), subset / f"{i:04d}_{p.name}")
        for r in range(args.repeat):
            def naive_run(r: int = r) -> dict:
                return run_naive_child("segmentation", Path(resolve_model(args.model, "busi-seg")), paths,
                                       tmp / f"naive{r}")

            if r % 2:  # alternate which goes first
                naive = naive_run()
                result = run_once(subset, tmp / f"run{r}", args)
            else:
                result = run_once(subset, tmp / f"run{r}", args)
                naive = naive_run()
            print(json.dumps({"run": r, "first": "naive loop" if r % 2 else "command", "batch_size": args.batch_size,
                              **result, "naive_loop": naive,
                              "ratio_end_to_end": round(result["images_per_s_end_to_end"]
                                                        / naive["images_per_s_end_to_end"], 2),
                              "ratio_loop_only": round((result["images_per_s_reported"] or 0)
                                                       / naive["images_per_s"], 2)}))


if __name__ == "__main__":
    main()
