"""Throughput and peak memory of ``breastdx predict pcam`` over a folder of patches (default: the subset's test split).

Runs the command line in a fresh process (``python -m breastdx.cli predict pcam FOLDER``) with the shipped
model (or ``--model``), writing ``predictions.csv`` into a temporary folder, and prints one JSON line per run:

* patches/s end to end: the whole process, from interpreter start (imports, model loading) to exit;
* patches/s of the prediction itself, as the command reports it (reading the JPEGs, network, writing the CSV);
* the child process's peak resident memory (``ru_maxrss``);
* the AUROC and accuracy of the predictions when the folder has PCam's ``<label>/`` sub-folders (a check
  that the figures come from real predictions).

In the same run, the naive notebook loop (one patch at a time, float32, eager PyTorch, PIL in) predicts the same
patches in a fresh process; with ``--repeat`` above 1 the command and the loop take turns going first (``first``).

The issue's target: >= 300 patches/s on 2 CPU cores.

Usage::

    python benchmarks/pcam_predict.py [--folder DATA/pcam_subset/test] [--model NAME_OR_DIR] [--threads 2]
        [--batch-size 64] [--workers 2] [--repeat 1] [--gradcam] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from _machine import machine_line, run_naive_child
from _child import read_rows, run_cli, scratch_folder


def _quality(rows: list[dict]) -> dict:
    """AUROC and argmax accuracy when the patches lie in ``0/`` and ``1/`` folders (PCam's layout)."""
    import numpy as np

    from breastdx.evaluation.metrics import auroc

    labelled = [(int(Path(r["source"]).parent.name), float(r["p_tumour"])) for r in rows
                if Path(r["source"]).parent.name in ("0", "1")]
    if not labelled:
        return {}
    y = np.array([a for a, _ in labelled])
    p = np.array([b for _, b in labelled])
    if y.min() == y.max():
        return {}
    return {"auroc": round(float(auroc(y, p)), 4), "accuracy_argmax": round(float(((p >= 0.5) == y).mean()), 4)}


def run_once(folder: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = ["predict", "pcam", str(folder), "--out", str(out), f"--batch-size={args.batch_size}",
           f"--workers={args.workers}", f"--gradcam={'true' if args.gradcam else 'false'}"]
    if args.model:
        cmd += ["--model", args.model]
    if args.threads:
        cmd += [f"--threads={args.threads}"]
    env = dict(os.environ)
    if args.threads:  # also bound the BLAS / OpenMP pools that start before torch.set_num_threads
        env["OMP_NUM_THREADS"] = str(args.threads)
    run = run_cli(cmd, env)
    text = (run.proc.stdout + run.proc.stderr).replace("\n", " ")
    rows = read_rows(out / "predictions.csv")
    n = len(rows)
    # the verb's own line: "3000 patch(s) in 12.3 s (243.9/s, model ...)"
    reported = re.search(r"in ([\d.]+) s \(([\d.]+)/s", run.proc.stdout.replace("\n", " "))
    return {
        "patches": n,
        "exit_code": run.proc.returncode,
        "wall_s": round(run.wall_s, 2),
        "patches_per_s_end_to_end": round(n / run.wall_s, 1),
        "patches_per_s_reported": float(reported.group(2)) if reported else None,
        "predict_s_reported": float(reported.group(1)) if reported else None,
        "cpu_s": round(run.cpu_s, 1),
        "peak_rss_mib": round(run.peak_rss_mib, 1),
        "dtype": m.group(1) if (m := re.search(r"inference in (\w+)", text)) else None,
        "backend": m.group(1) if (m := re.search(r": (\w+) backend \(", text)) else None,
        **_quality(rows),
        "stderr_tail": run.stderr_tail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    parser.add_argument("--folder", type=Path, default=default_root / "pcam_subset" / "test",
                        help="folder of patches (searched recursively)")
    parser.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="reader threads")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--gradcam", action="store_true", help="also write a Grad-CAM overlay per patch")
    parser.add_argument("--keep", action="store_true", help="keep the output folders")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"{args.folder}: no such folder; pass --folder or set BREASTDX_DATA.")
    from breastdx.data.image_files import list_images
    from breastdx.zoo import resolve_model

    print(json.dumps(machine_line(threads_option=args.threads)))
    paths = list_images([args.folder])
    with scratch_folder("pcam_predict_", args.keep) as tmp:
        for r in range(args.repeat):
            load = os.getloadavg()[0]

            def naive_run(r: int = r) -> dict:
                return run_naive_child("classification", Path(resolve_model(args.model, "pcam")), paths,
                                       tmp / f"naive{r}")

            if r % 2:  # alternate which goes first
                naive = naive_run()
                result = run_once(args.folder, tmp / f"run{r}", args)
            else:
                result = run_once(args.folder, tmp / f"run{r}", args)
                naive = naive_run()
            print(json.dumps({"run": r, "first": "naive loop" if r % 2 else "command", "folder": str(args.folder),
                              "threads": args.threads,
                              "batch_size": args.batch_size, "gradcam": args.gradcam,
                              "load_average_1min_before": round(load, 2), **result, "naive_loop": naive,
                              "ratio_end_to_end": round(result["patches_per_s_end_to_end"]
                                                        / naive["images_per_s_end_to_end"], 2)}), flush=True)


if __name__ == "__main__":
    main()
