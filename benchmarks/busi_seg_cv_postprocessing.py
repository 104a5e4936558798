"""The mask threshold and cleaning of busi-seg, chosen by cross-validation (issue 13, part 2).

Training chooses the postprocessing on its 60-76 validation images, from :data:`breastdx.tasks.busi_seg.
POSTPROCESSING_GRID` (keep the largest component or not; drop components under 0, 0.1 or 0.2% of the image) at the
fixed threshold 0.5. Here each fold model of a busi-seg cross-validation segments its own test fold once
(probabilities at the original size, float32) and every setting of a wider grid (thresholds 0.3-0.8 times that
grid) is scored on all the out-of-fold images: Dice over lesion images, the share of normal images given a lesion,
and the training's own criterion, the mean Dice over all images (a normal image scores 1 when left empty, else 0).
The base split's test cases are not read. Printed: the settings ranked by that criterion, with the folds'
own choices for comparison. A setting chosen here on 610 images is chosen on the very images it is scored on: read
its margin over the training's choice as an upper bound.

``--nested`` also asks the fair question, whether the training should choose the threshold too: each fold's
validation part chooses from the wider grid by the training's criterion, and the choice is scored on that fold's
test images only (one more prediction of the 60 validation images per fold).

Usage::

    python benchmarks/busi_seg_cv_postprocessing.py CV_RUN [--top 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", type=Path)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--nested", action="store_true")
    args = parser.parse_args()
    from breastdx.config import resolve_data_root
    from breastdx.data.busi import find_busi_root, scan_busi
    from breastdx.evaluation.segmentation import case_scores
    from breastdx.inference.predictor import Postprocessing, SegmentationPredictor
    from breastdx.tasks.busi_seg import POSTPROCESSING_GRID, BusiSegTask

    by_name = {c.name: c for c in scan_busi(find_busi_root(resolve_data_root()))}
    k = json.loads((args.cv / "folds.json").read_text())["k"]
    settings = [(t, keep, frac) for t in THRESHOLDS for keep, frac in POSTPROCESSING_GRID]
    posts = {s: Postprocessing(threshold=s[0], keep_largest=s[1], min_area_fraction=s[2]) for s in settings}
    scores = {s: [] for s in settings}
    own, labels, nested = [], [], []
    for f in range(k):
        fold = args.cv / "folds" / f"f{f}"
        split = json.loads((fold / "fold_split.json").read_text())
        predictor = SegmentationPredictor.from_dir(fold / "model", task="busi-seg", dtype="float32")
        own_post = predictor.postprocessing
        cases = [by_name[n] for n in split["test"]]
        for c, o, target in zip(cases, *BusiSegTask._predict_cases(predictor, cases, keep_prob=True)):
            labels.append(c.label)
            own.append(case_scores(own_post.apply(o.prob)[0], target))
            for s in settings:
                scores[s].append(case_scores(posts[s].apply(o.prob)[0], target))
        line = {"fold": f, "n": len(cases), "own": own_post.to_meta()}
        if args.nested:
            val = [by_name[n] for n in split["val"]]
            val_scores = {s: [] for s in settings}
            for o, target in zip(*BusiSegTask._predict_cases(predictor, val, keep_prob=True)):
                for s in settings:
                    val_scores[s].append(case_scores(posts[s].apply(o.prob)[0], target)["dice"])
            best = max(settings, key=lambda s: np.mean(val_scores[s]))  # the first of equals, as training
            nested += scores[best][-len(cases):]
            line["nested_choice"] = list(best)
        print(json.dumps(line), flush=True)
    lesion = np.array([lab != "normal" for lab in labels])

    def summary(rows: list[dict]) -> dict:
        dice = np.array([r["dice"] for r in rows])
        return {"all_images": float(dice.mean()), "dice_lesion": float(dice[lesion].mean()),
                "normal_fp": float(np.mean([r["false_positive"] for r, is_l in zip(rows, lesion) if not is_l]))}

    ranked = sorted(((summary(v), s) for s, v in scores.items()), key=lambda x: -x[0]["all_images"])
    mine = summary(own)
    print(f"\n| setting (threshold, keep largest, smallest area) | mean Dice, all {len(labels)} images | "
          f"Dice, {int(lesion.sum())} lesion images | normal images with a false lesion ({int((~lesion).sum())}) |")
    print("|---|---|---|---|")
    print(f"| each fold's own choice (training's rule) | {mine['all_images']:.3f} | {mine['dice_lesion']:.3f} | "
          f"{mine['normal_fp']:.3f} |")
    if args.nested:
        m = summary(nested)
        print(f"| chosen on each fold's validation part from this grid (nested) | {m['all_images']:.3f} | "
              f"{m['dice_lesion']:.3f} | {m['normal_fp']:.3f} |")
    for m, s in ranked[:args.top]:
        print(f"| {s[0]}, {s[1]}, {s[2]} | {m['all_images']:.3f} | {m['dice_lesion']:.3f} | {m['normal_fp']:.3f} |")


if __name__ == "__main__":
    main()
