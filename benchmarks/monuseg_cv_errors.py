"""Where do the monuseg instances go wrong on unseen sites? Each reference nucleus sorted by what happened to it.

Every training tile of a ``breastdx train monuseg --cv-folds K`` run is segmented by the fold model that held it
out (its own augmentation and watershed); the test tiles are not read. Each reference nucleus is then:

* matched: a predicted nucleus with IoU > 0.5 (the PQ rule, :data:`breastdx.evaluation.instances.PQ_IOU`);
* missed: the predicted nuclei cover less than half of it;
* merged: not matched, and the predicted nucleus overlapping it most also covers at least 30% of another reference
  nucleus;
* split: not matched nor merged, and two or more predicted nuclei each cover at least 20% of it;
* badly outlined: the rest (covered, one main predicted nucleus, IoU <= 0.5).

Predicted nuclei lying at least half on background are counted as spurious. Which kind dominates says which lever
is left: merges and splits point at the instance representation (seeds, distance maps), misses and spurious nuclei
at detection, bad outlines at the foreground.

    python benchmarks/monuseg_cv_errors.py runs/monuseg-cv/macenko-e100

Needs ``BREASTDX_DATA``. Prints one row per tile and the totals.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
from breastdx.evaluation.instances import PQ_IOU, contingency
from breastdx.inference.nuclei import NucleusPredictor

KINDS = ("matched", "missed", "merged", "split", "badly outlined")


def sort_nuclei(pred: np.ndarray, reference: np.ndarray) -> dict[str, int]:
    """Counts of the reference nuclei of each of :data:`KINDS`, and of spurious predicted nuclei.

    Args:
        pred: Predicted instance labels, int ``(H, W)``, 0 background.
        reference: Reference instance labels, same shape.
    """
    table, area_g, area_p = contingency(pred, reference)
    inter = table[1:, 1:].astype(np.float64)
    counts = dict.fromkeys((*KINDS, "spurious"), 0)
    counts["spurious"] = int((table[0, 1:] >= 0.5 * area_p).sum())
    if inter.shape[1] == 0:
        counts["missed"] = len(area_g)
        return counts
    iou = inter / np.maximum(area_g[:, None] + area_p[None, :] - inter, 1)
    share = inter / np.maximum(area_g[:, None], 1)  # fraction of each reference nucleus a prediction covers
    for g in range(len(area_g)):
        if iou[g].max() > PQ_IOU:
            kind = "matched"
        elif share[g].sum() < 0.5:
            kind = "missed"
        elif ((share[:, inter[g].argmax()] >= 0.3).sum() >= 2):
            kind = "merged"
        elif (share[g] >= 0.2).sum() >= 2:
            kind = "split"
        else:
            kind = "badly outlined"
        counts[kind] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a --cv-folds run folder (folds/f*/model)")
    args = ap.parse_args()
    cases = {c.name: c for c in scan_monuseg(find_monuseg_root(Path(os.environ["BREASTDX_DATA"])))}
    rows = {}
    for fold in sorted((args.run / "folds").glob("f*")):
        predictor = NucleusPredictor.from_dir(fold / "model")
        for name in json.loads((fold / "model" / "split.json").read_text())["test"]:
            image, reference = load_case(cases[name])
            rows[name] = sort_nuclei(predictor.predict(image)[0], reference)
    keys = ["reference", *KINDS, "spurious"]
    print(f"| tile | {' | '.join(keys)} |\n|---" + "|---" * len(keys) + "|")
    total = dict.fromkeys(keys, 0)
    for name, c in rows.items():
        c = {"reference": sum(c[k] for k in KINDS), **c}
        total = {k: total[k] + c[k] for k in keys}
        print(f"| {name} | " + " | ".join(str(c[k]) for k in keys) + " |")
    n = total["reference"]
    print("| all | " + " | ".join(f"{total[k]} ({total[k] / n:.0%})" if k in KINDS else str(total[k])
                                   for k in keys) + " |")


if __name__ == "__main__":
    main()
