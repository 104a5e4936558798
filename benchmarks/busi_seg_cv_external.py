"""busi-seg cross-validation arms at other hospitals: the external Dice of each fold model, paired by image.

Each argument is a ``breastdx train busi-seg --cv-folds 5`` run folder (one recipe). Every fold model
(``folds/fK/model``) scores each external folder through ``breastdx evaluate busi-seg --external DIR --dtype
float32`` (default: the data root's BrEaST and BUS-UCLM samples), and this prints, per recipe and folder: the Dice
over lesion images of each fold model, their mean and sd, and each recipe minus the first, the mean over fold models
of the per-image difference with a 95% bootstrap interval over the images (2,000 resamples). These show whether a
change travels; they choose nothing (issue 13: never train on or choose by the external samples).

Usage::

    BREASTDX_DATA=../shared/data python benchmarks/busi_seg_cv_external.py BASE_RUN OTHER_RUN [...] [--external DIR ...]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _machine import machine_line


def _fold_dice(model_dir: Path, external: Path, work: Path) -> dict[str, float]:
    """Per lesion image id: the Dice of one model on one external folder (``evaluate``'s ``cases.csv``)."""
    out = work / f"{abs(hash((str(model_dir), str(external))))}"
    cmd = [sys.executable, "-m", "breastdx", "evaluate", "busi-seg", "--external", str(external), "--model",
           str(model_dir), "--dtype", "float32", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out / "cases.csv", newline="") as f:
        return {r["id"]: float(r["dice"]) for r in csv.DictReader(f) if r["label"] != "normal" and r["dice"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--external", nargs="*", type=Path)
    args = ap.parse_args()
    root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    externals = args.external or [root / "breast_lesions_usg_sample", root / "bus_uclm_sample"]
    print(machine_line())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for ext in externals:
            per_run = {}
            for run in args.runs:
                folds = sorted(p for p in (run / "folds").iterdir() if (p / "model").is_dir())
                per_run[run] = [_fold_dice(f / "model", ext, Path(tmp)) for f in folds]
            ids = sorted(set.intersection(*(set(d) for ds in per_run.values() for d in ds)))
            print(f"\n{ext.name} ({len(ids)} lesion images), Dice per fold model:")
            base = np.mean([[d[i] for i in ids] for d in per_run[args.runs[0]]], axis=0)
            for run, ds in per_run.items():
                means = [float(np.mean([d[i] for i in ids])) for d in ds]
                line = (f"- {run.name}: " + ", ".join(f"{m:.3f}" for m in means)
                        + f"; mean {np.mean(means):.3f} (sd {np.std(means, ddof=1):.3f})")
                if run != args.runs[0]:
                    diff = np.mean([[d[i] for i in ids] for d in ds], axis=0) - base
                    boots = [diff[rng.integers(0, diff.size, diff.size)].mean() for _ in range(2000)]
                    lo, hi = np.percentile(boots, [2.5, 97.5])
                    line += f"; minus {args.runs[0].name}, paired over images {diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"
                print(line)


if __name__ == "__main__":
    main()
