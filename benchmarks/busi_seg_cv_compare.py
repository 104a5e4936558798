"""Two or more busi-seg cross-validation runs side by side, with paired out-of-fold differences (issue 13, part 2).

Reads run folders of ``breastdx train busi-seg --cv-folds K`` made with the same split file and seed (so with the same
folds: checked) and prints one JSON line per run, then a Markdown table:

* the pooled out-of-fold Dice over benign + malignant images and the share of normal images given a false lesion,
  with their 95% bootstrap intervals (``metrics.json``), and the per-fold test Dice as mean (sd);
* against the first run: the paired difference of out-of-fold Dice per lesion image (``oof_per_image.csv``), with
  a 95% percentile interval from ``--n-bootstrap`` resamples of the images and one from resampling the near-duplicate
  groups of the base split (``base_split.json``: the frames of one lesion together; the interval to quote, as for
  ``metrics.json``'s ``metrics_by_group``), and the number of folds in which the run beat the first.

Cross-validation chooses: the run with the best pooled out-of-fold Dice is named, and whether its interval against
the first, over near-duplicate groups, excludes 0.

Usage::

    python benchmarks/busi_seg_cv_compare.py RUN_DIR RUN_DIR [...] [--n-bootstrap 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from busi_seg_cv_ensemble import _base_groups, _group_ci

from breastdx.runs import number


def _oof(run: Path) -> dict[str, dict[str, str]]:
    with open(run / "oof_per_image.csv", newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folds = [json.loads((r / "folds.json").read_text())["folds"] for r in args.runs]
    if any(f != folds[0] for f in folds[1:]):
        raise SystemExit("the runs were cut into different folds: compare runs of the same split file and seed")
    first = _oof(args.runs[0])
    lesion = sorted(c for c, r in first.items() if r["label"] != "normal")
    rng = np.random.default_rng(args.seed)
    draws = rng.integers(0, len(lesion), (args.n_bootstrap, len(lesion)))
    groups = _base_groups(args.runs[0])
    first_fold = [number(p["test_dice"]) for p in json.loads((args.runs[0] / "metrics.json").read_text())["per_fold"]]
    rows = []
    for run in args.runs:
        m = json.loads((run / "metrics.json").read_text())
        oof = _oof(run)
        diff = np.array([float(oof[c]["dice"]) - float(first[c]["dice"]) for c in lesion])
        per_fold = [number(p["test_dice"]) for p in m["per_fold"]]  # null: NaN
        row = {"run": str(run), "oof_dice": m["metrics"]["dice"], "oof_normal_fp_share": m["metrics"].get(
            "normal_fp_share"), "per_fold_test_dice": per_fold,
            "dice_minus_first": {"value": float(diff.mean()),
                                 "ci95": [float(x) for x in np.percentile(diff[draws].mean(1), [2.5, 97.5])],
                                 "n": len(lesion)},
            "dice_minus_first_by_group": _group_ci(diff, lesion, groups, args.n_bootstrap, args.seed),
            "folds_better_than_first": int(sum(a > b for a, b in zip(per_fold, first_fold)))}
        rows.append(row)
        print(json.dumps(row))
    print()
    print("| run | out-of-fold Dice (lesion images) | normal images with a false lesion | test Dice per fold, "
          "mean (sd) | minus the first, paired (interval over images) | the same, interval over near-duplicate "
          "groups | folds better than the first |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d, fp, pf = r["oof_dice"], r["oof_normal_fp_share"], r["per_fold_test_dice"]
        diff, by_group = r["dice_minus_first"], r["dice_minus_first_by_group"]
        print(f"| {r['run']} | {d['value']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}] (n = {d['n']}) | "
              + (f"{fp['value']:.3f} [{fp['ci95'][0]:.3f}, {fp['ci95'][1]:.3f}]" if fp else "") + " | "
              f"{np.mean(pf):.3f} ({np.std(pf, ddof=1):.3f}) | "
              + ("" if r is rows[0] else f"{diff['value']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]")
              + " | " + ("" if r is rows[0] else f"[{by_group['ci95'][0]:+.3f}, {by_group['ci95'][1]:+.3f}] "
                                                  f"({by_group['n_groups']} groups)")
              + f" | {'' if r is rows[0] else r['folds_better_than_first']} |")
    best = max(rows, key=lambda r: r["oof_dice"]["value"])
    lo, hi = best["dice_minus_first_by_group"]["ci95"]
    print(f"\nCross-validation chooses {best['run']} (pooled out-of-fold Dice {best['oof_dice']['value']:.3f}); "
          + ("it is the first run." if best is rows[0] else
             f"its paired interval against the first over near-duplicate groups "
             f"{'excludes' if lo > 0 else 'includes'} 0 [{lo:+.3f}, {hi:+.3f}]."))


if __name__ == "__main__":
    main()
