"""Throughput and peak memory of ``breastdx predict busi-seg`` over a folder of BUSI images.

Runs the command line in a fresh process (``python -m breastdx.cli predict busi-seg FOLDER``) with the
shipped model (or ``--model``), writing masks, overlays and ``predictions.csv`` into a temporary folder, and
prints:

* images/s end to end: the whole process, from interpreter start (imports, model loading) to exit;
* images/s of the prediction itself, as the command reports it (model loading, reading, network, writing);
* the child process's peak resident memory (``ru_maxrss``).

It also prints the CPU time the child used; on a machine shared with other jobs, ``images / cpu_s`` is the
throughput per fully used core, a figure that does not depend on how busy the machine is.

The issue's targets: >= 25 images/s end to end on 2 CPU cores, peak memory < 2 GB.

Usage::

    python benchmarks/busi_seg_predict.py [--folder DATA/busi] [--model NAME_OR_DIR] [--threads N]
        [--batch-size 16] [--repeat 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from _child import read_rows, run_cli, scratch_folder


def run_once(folder: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = ["predict", "busi-seg", str(folder), "--out", str(out), "--batch-size", str(args.batch_size),
           "--workers", str(args.workers)]
    if args.model:
        cmd += ["--model", args.model]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    run = run_cli(cmd)
    n = len(read_rows(out / "predictions.csv"))
    reported = re.search(r"segmented in ([\d.]+) s \(([\d.]+) images/s", run.proc.stdout.replace("\n", " "))
    return {
        "images": n,
        "exit_code": run.proc.returncode,
        "wall_s": round(run.wall_s, 2),
        "images_per_s_end_to_end": round(n / run.wall_s, 1),
        "images_per_s_reported": float(reported.group(2)) if reported else None,
        "cpu_s": round(run.cpu_s, 1),
        "images_per_cpu_s": round(n / max(run.cpu_s, 1e-9), 1),
        "peak_rss_mib": round(run.peak_rss_mib, 1),
        "stderr_tail": run.stderr_tail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    parser.add_argument("--folder", type=Path, default=default_root / "busi",
                        help="folder of images (searched recursively; *_mask files are skipped)")
    parser.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads passed as --threads (0: the command's default, 1 torch thread)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="reader / writer threads")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the output folders")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"{args.folder}: no such folder; pass --folder or set BREASTDX_DATA.")
    with scratch_folder("busi_seg_predict_", args.keep) as tmp:
        for r in range(args.repeat):
            result = run_once(args.folder, tmp / f"run{r}", args)
            print(json.dumps({"run": r, "folder": str(args.folder), "threads": args.threads,
                              "batch_size": args.batch_size, **result}))


if __name__ == "__main__":
    main()
