"""The lesion-presence gate of busi-seg, measured and its threshold chosen by cross-validation (issue 13).

``--presence-model busi-cls --presence-threshold T`` empties busi-seg's mask where the classifier's P(normal)
reaches T (:mod:`breastdx.inference.presence`). The shipped threshold, 0.3, was chosen on 13 normal validation
images. Here the question is asked on the 610 training and validation images of a grouped 5-fold cross-validation:
in each fold, that fold's busi-seg (``breastdx train busi-seg --cv-folds 5``) and that fold's whole-image busi-cls
(``benchmarks/busi_cls_cv_train.sh CV_RUN OUT whole 0``, trained on the same fold's train part, initialised from that
fold's busi-seg) predict the fold's validation and test images. The base split's test cases are never read.

Printed, over the pooled out-of-fold (test-fold) images: for every threshold of a grid and without the gate, the
Dice over the lesion images (an emptied mask scores 0), the share of lesion images given no mask, and the share of
normal images given a false lesion, with 95% intervals over near-duplicate groups (the frames of one lesion
resampled together); and the fair estimate (``nested``): each fold's validation images choose the threshold, or no
gate, by the training's own criterion (the mean Dice over all images, a normal image scoring 1 when left empty), and
only that fold's test images are scored. A threshold read off the pooled grid is chosen on the images it is scored
on; the nested row is the one to quote. Last, how well each score tells the normal images from the lesion images
(AUROC): the classifier's P(normal), and the segmenter's own largest lesion probability and mask area.

Usage::

    python benchmarks/busi_seg_cv_presence.py SEG_CV_RUN CLS_ARM [--out FILE.json]

e.g. ``python benchmarks/busi_seg_cv_presence.py runs/busi-seg-cv/usual runs/busi-cls-cv/whole``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

THRESHOLDS = (None, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Gate thresholds on P(normal); None is no gate."""


def _gated(rows: list[dict], empty: list[dict], p_normal: np.ndarray, threshold: float | None) -> list[dict]:
    """Each image's scores with the segmenter's mask, or with an empty mask where P(normal) >= threshold."""
    if threshold is None:
        return list(rows)
    return [e if p >= threshold else r for r, e, p in zip(rows, empty, p_normal)]


def _criterion(rows: list[dict]) -> float:
    """The training's postprocessing criterion: mean Dice over all images (an empty normal image scores 1)."""
    return float(np.mean([r["dice"] for r in rows]))


def _separation(rows: list[dict], groups: list[list[str]], n_boot: int) -> dict[str, dict]:
    """AUROC of normal against lesion images for the classifier's P(normal) and for the segmenter's own outputs
    (1 - its largest lesion probability, minus its mask area), over near-duplicate groups."""
    from breastdx.evaluation.ci import patient_bootstrap
    from breastdx.evaluation.metrics import auroc

    group_of = {name: k for k, members in enumerate(groups) for name in members}
    ids = np.asarray([str(group_of.get(r["case"], r["case"])) for r in rows])
    y = np.asarray([r["label"] == "normal" for r in rows], dtype=int)
    scores = {"busi-cls P(normal)": np.asarray([r["p_normal"] for r in rows]),
              "busi-seg 1 - largest lesion probability": 1 - np.asarray([r["max_prob"] for r in rows]),
              "busi-seg minus mask area": -np.asarray([r["area_px"] for r in rows], dtype=float)}

    def stat(score: np.ndarray):
        return lambda idx: float(auroc(y[idx], score[idx])) if 0 < y[idx].sum() < idx.size else float("nan")

    return {name: patient_bootstrap(stat(v), ids, n_boot=n_boot, seed=0) for name, v in scores.items()}


def _label(t: float | None) -> str:
    return "no gate" if t is None else f"P(normal) >= {t:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seg_cv", type=Path)
    parser.add_argument("cls_arm", type=Path)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from breastdx.config import resolve_data_root
    from breastdx.data.busi import find_busi_root, load_case, scan_busi
    from breastdx.evaluation.segmentation import case_scores
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.predictor import SegmentationPredictor
    from breastdx.pipeline.seg_crossval import group_intervals
    from breastdx.tasks.busi_seg import BusiSegTask

    by_name = {c.name: c for c in scan_busi(find_busi_root(resolve_data_root()))}
    k = json.loads((args.seg_cv / "folds.json").read_text())["k"]
    pooled = {t: [] for t in THRESHOLDS}
    nested, groups, folds_out, cases_out = [], [], [], []
    for f in range(k):
        fold = args.seg_cv / "folds" / f"f{f}"
        split = json.loads((fold / "fold_split.json").read_text())
        cls_dir = args.cls_arm / f"f{f}" / "model"
        cls_split = json.loads((cls_dir / "split.json").read_text())
        if sorted(cls_split["test"]) != sorted(split["test"]):
            raise SystemExit(f"{cls_dir} was not trained on fold f{f}'s split: its test cases differ.")
        groups += split.get("groups", [])
        seg = SegmentationPredictor.from_dir(fold / "model", task="busi-seg", dtype="float32")
        cls = ClassificationPredictor.from_dir(cls_dir, task="busi-cls")
        normal = list(cls.class_names).index("normal")
        part_rows = {}
        for part in ("val", "test"):
            cases = [by_name[n] for n in split[part]]
            outputs, targets = BusiSegTask._predict_cases(seg, cases, keep_prob=False)
            images = [load_case(c, mode=cls.preprocessing.mode)[0] for c in cases]
            p_normal = cls.predict_proba(images)[:, normal]
            rows = [{**case_scores(o.mask, t), "case": c.name, "label": c.label} for c, o, t in zip(cases, outputs, targets)]
            empty = [{**case_scores(np.zeros_like(t), t), "case": c.name, "label": c.label} for c, t in zip(cases, targets)]
            part_rows[part] = (rows, empty, p_normal)
            cases_out += [{"fold": f, "part": part, "case": c.name, "label": c.label, "p_normal": float(p),
                           "area_px": int(o.area_px), "max_prob": float(o.max_prob), "dice": r["dice"]}
                          for c, o, p, r in zip(cases, outputs, p_normal, rows)]
        val_scores = {t: _criterion(_gated(*part_rows["val"], t)) for t in THRESHOLDS}
        chosen = max(THRESHOLDS, key=lambda t: val_scores[t])  # the first of equals: no gate before any threshold
        for t in THRESHOLDS:
            pooled[t] += _gated(*part_rows["test"], t)
        nested += _gated(*part_rows["test"], chosen)
        line = {"fold": f, "n_val": len(split["val"]), "n_test": len(split["test"]), "chosen": chosen,
                "val_criterion": {_label(t): round(v, 4) for t, v in val_scores.items()}}
        folds_out.append(line)
        print(json.dumps(line), flush=True)

    def summary(rows: list[dict]) -> dict:
        r = group_intervals(rows, groups, n_boot=args.n_boot)
        return {"criterion": _criterion(rows), **{m: r[m] for m in ("dice", "missed_share", "normal_fp_share")}}

    table = {_label(t): summary(pooled[t]) for t in THRESHOLDS}
    table["nested: each fold's validation chooses"] = summary(nested)
    n_lesion = sum(r["label"] != "normal" for r in nested)
    print(f"\n| gate | mean Dice, all {len(nested)} images | Dice, {n_lesion} lesion images | lesion images left "
          f"without a mask | normal images with a false lesion ({len(nested) - n_lesion}) |")
    print("|---|---|---|---|---|")

    def cell(m: dict) -> str:
        return f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"

    for name, m in table.items():
        print(f"| {name} | {m['criterion']:.3f} | {cell(m['dice'])} | {cell(m['missed_share'])} | "
              f"{cell(m['normal_fp_share'])} |")
    print("\nthresholds chosen by the folds' validation images:", [_label(x["chosen"]) for x in folds_out])
    separation = _separation([r for r in cases_out if r["part"] == "test"], groups, args.n_boot)
    print("\nnormal against lesion images, out of fold: AUROC of each score (95% interval over groups)")
    for name, m in separation.items():
        print(f"- {name}: {cell(m)}")
    if args.out:
        args.out.write_text(json.dumps({"folds": folds_out, "table": table, "separation": separation, "cases": cases_out}, indent=1))


if __name__ == "__main__":
    main()
