"""Test-time flipping, chosen by cross-validation: each fold model of a busi-seg cross-validation scores its own
test fold with and without ``--tta hflip`` (issue 13, part 2: post-processing chosen on cross-validation).

The shipped busi-seg was given ``tta: none`` because its 76 validation images did not favour the flip (0.808 against
0.810). Here every train + val image of the grouped split is scored once, out of fold, by the model of its fold,
both ways, through ``breastdx evaluate busi-seg --dtype float32`` (``--tta none`` and ``--tta hflip``; the fold's
own postprocessing). The base split's test cases are not read. Printed: one JSON line per fold, then the pooled
Dice over lesion images and the share of normal images with a false lesion per arm, with 95% bootstrap intervals,
and the paired differences (hflip minus none), their intervals over images and over near-duplicate groups (the frames
of one lesion resampled together: the intervals to quote). The flip costs a second forward pass per image.

Usage::

    python benchmarks/busi_seg_cv_tta.py CV_RUN [--n-bootstrap 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from busi_seg_cv_ensemble import _base_groups, _ci, _draws, _evaluate, _group_ci  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", type=Path)
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    k = json.loads((args.cv / "folds.json").read_text())["k"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in range(k):
            fold = args.cv / "folds" / f"f{f}"
            split = fold / "fold_split.json"
            none = _evaluate(fold / "model", split, Path(tmp) / f"none{f}", "--tta", "none")
            flip = _evaluate(fold / "model", split, Path(tmp) / f"flip{f}", "--tta", "hflip")
            for case, r in none.items():
                rows.append({"fold": f, "case": case, "label": r["label"], "none": float(r["dice"]),
                             "hflip": float(flip[case]["dice"]), "none_fp": r["false_positive"] == "True",
                             "hflip_fp": flip[case]["false_positive"] == "True"})
            lesion = [r for r in rows if r["fold"] == f and r["label"] != "normal"]
            print(json.dumps({"fold": f, "n_lesion": len(lesion), "dice_none": float(np.mean([r["none"] for r in lesion])),
                              "dice_hflip": float(np.mean([r["hflip"] for r in lesion]))}), flush=True)
    lesion, normal, dl, dn = _draws(rows, args.n_bootstrap, args.seed)
    none, flip = (np.array([r[a] for r in lesion]) for a in ("none", "hflip"))
    nfp, ffp = (np.array([r[a] for r in normal], dtype=float) for a in ("none_fp", "hflip_fp"))
    pooled = {"dice_none": _ci(none, dl), "dice_hflip": _ci(flip, dl), "dice_hflip_minus_none": _ci(flip - none, dl),
              "normal_fp_none": _ci(nfp, dn), "normal_fp_hflip": _ci(ffp, dn),
              "folds_hflip_better": int(sum(np.mean([r["hflip"] - r["none"] for r in lesion if r["fold"] == f]) > 0
                                            for f in range(k)))}
    groups = _base_groups(args.cv)
    pooled["dice_hflip_minus_none_by_group"] = _group_ci(flip - none, [r["case"] for r in lesion], groups,
                                                         args.n_bootstrap, args.seed)
    pooled["normal_fp_hflip_minus_none_by_group"] = _group_ci(ffp - nfp, [r["case"] for r in normal], groups,
                                                              args.n_bootstrap, args.seed)
    print(json.dumps(pooled))


if __name__ == "__main__":
    main()
