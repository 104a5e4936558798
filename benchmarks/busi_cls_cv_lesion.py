"""Lesion-aware classification chosen by grouped 5-fold cross-validation: whole image, lesion crop, and the two fused.

Reads two sets of busi-cls runs trained on the same folds (``breastdx train busi-cls --split-file FOLD/split.json``
for each fold of ``breastdx train busi-seg --cv-folds 5``, initialised from that fold's busi-seg model): WHOLE_DIR
holds the whole-image runs, CROP_DIR the runs with ``--lesion-crop FOLD/model`` (that fold's segmenter, so no fold
sees a segmenter trained on its held-out images), each as ``f0`` ... ``f4``. For every fold, both models predict
the fold's held-out images (its split's ``test`` part, never the base split's test cases), and the out-of-fold
probabilities are pooled:

* the fusion weight ``w`` of ``w * P(whole) + (1 - w) * P(crop)`` is chosen by out-of-fold negative
  log-likelihood; the fused figures are nested (each fold fused with the weight chosen on the other four), so that
  the choice does not flatter them;
* printed with 95% bootstrap intervals: NLL, accuracy (argmax), macro AUROC, benign-vs-malignant AUROC over the
  lesion images, and paired differences of the benign-vs-malignant AUROC against the whole image;
* on each external folder, the five fold models of each arm averaged (a fold ensemble), fused with the weight
  chosen out of fold: benign-vs-malignant AUROC over its lesions, with the paired difference (never used to
  choose).

Usage::

    python benchmarks/busi_cls_cv_lesion.py WHOLE_DIR CROP_DIR [--external DIR ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from busi_lesion_aware import _check_same_split, _external, _lesion_auroc, _nll, _paired


def _fold_images(split_file: Path, data_root: Path) -> tuple[list[np.ndarray], np.ndarray, tuple[str, ...]]:
    from breastdx.tasks.busi_cls import BusiClsConfig, read

    with tempfile.TemporaryDirectory() as tmp:  # the reader writes the split it read: not into the run folder
        part = read(BusiClsConfig(), data_root, split_file, Path(tmp) / "split.json").parts["test"]
        return [part.read(i)[0] for i in range(len(part))], part.labels, part.ids


def _nll_ci(labels: np.ndarray, prob: np.ndarray, n_boot: int) -> dict:
    from breastdx.evaluation.ci import mean_ci

    losses = -np.log(np.clip(prob[np.arange(labels.size), labels], 1e-12, 1.0))
    return mean_ci(losses, n_boot=n_boot, seed=0)


def _paired_nll(labels: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int) -> dict:
    """Mean per-case log-loss of ``a`` minus that of ``b`` (negative: ``a`` is better), 95% bootstrap CI."""
    from breastdx.evaluation.ci import mean_ci

    rows = np.arange(labels.size)
    la, lb = (-np.log(np.clip(p[rows, labels], 1e-12, 1.0)) for p in (a, b))
    return mean_ci(la - lb, n_boot=n_boot, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("whole_dir", type=Path)
    parser.add_argument("crop_dir", type=Path)
    parser.add_argument("--external", nargs="*", type=Path, default=None,
                        help="labelled folders from elsewhere (default: the data root's breast_lesions_usg_sample "
                             "and bus_uclm_sample)")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("BREASTDX_DATA", "../shared/data")))
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.external is None:
        args.external = [args.data_root / "breast_lesions_usg_sample", args.data_root / "bus_uclm_sample"]

    from breastdx.evaluation.classification import classification_metrics
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.lesion_crop import LesionCropper, choose_fusion_weight, fuse

    folds = sorted(p.name for p in args.whole_dir.iterdir() if (p / "model" / "meta.json").is_file()
                   and (args.crop_dir / p.name / "model" / "meta.json").is_file())
    if len(folds) < 2:
        raise SystemExit(f"{args.whole_dir}, {args.crop_dir}: fewer than two folds trained in both.")
    labels, pw, pc, fold_of, ids = [], [], [], [], []
    ext = {}
    ext_pw: dict[str, list[np.ndarray]] = {}
    ext_pc: dict[str, list[np.ndarray]] = {}
    classes: list[str] = []
    for k, fold in enumerate(folds):
        # both arms' fold models must have held out the same cases: their predictions are paired by position
        _check_same_split([args.crop_dir / fold / "model"], args.whole_dir / fold / "model" / "split.json")
        whole = ClassificationPredictor.from_dir(args.whole_dir / fold / "model", task="busi-cls")
        crop_model = ClassificationPredictor.from_dir(args.crop_dir / fold / "model", task="busi-cls")
        cropper = LesionCropper.for_classifier(crop_model.meta)
        classes = list(whole.class_names)
        images, y, names = _fold_images(args.whole_dir / fold / "model" / "split.json", args.data_root)
        labels.append(y)
        ids += list(names)
        fold_of.append(np.full(y.size, k))
        pw.append(whole.predict_proba(images))
        pc.append(crop_model.predict_proba(cropper.crops(images)))
        for folder in args.external:
            if folder.name not in ext:
                ext[folder.name] = _external(folder, classes)
            ims = ext[folder.name][0]
            ext_pw.setdefault(folder.name, []).append(whole.predict_proba(ims))
            ext_pc.setdefault(folder.name, []).append(crop_model.predict_proba(cropper.crops(ims)))
        print(json.dumps({"fold": fold, "n_held_out": int(y.size)}), flush=True)
    if len(set(ids)) != len(ids):
        raise SystemExit("A case is held out by two folds: these are not the folds of one cross-validation.")
    y, p_whole, p_crop, fold_of = (np.concatenate(a) for a in (labels, pw, pc, fold_of))
    w_all, nll_by_w = choose_fusion_weight(y, p_whole, p_crop)
    fused = np.empty_like(p_whole)
    nested = {}
    for k in range(len(folds)):
        rest = fold_of != k
        w_k, _ = choose_fusion_weight(y[rest], p_whole[rest], p_crop[rest])
        nested[folds[k]] = w_k
        fused[~rest] = fuse(p_whole[~rest], p_crop[~rest], w_k)
    lesion = y != classes.index("normal")
    n = args.n_bootstrap
    rows = {}
    for name, prob in (("whole image", p_whole), ("lesion crop", p_crop), ("fused (nested weight)", fused)):
        m = classification_metrics(y, prob, classes, "malignant", None, n_boot=n, seed=0)
        rows[name] = {"nll": _nll_ci(y, prob, n), "accuracy": m["accuracy"], "macro_auroc": m["macro_auroc"],
                      "auroc_benign_vs_malignant": _lesion_auroc(y, prob, lesion, classes, n)}
        if name != "whole image":
            rows[name]["paired_benign_vs_malignant_vs_whole"] = _paired(y, prob, p_whole, lesion, classes, n)
            rows[name]["paired_nll_vs_whole"] = _paired_nll(y, prob, p_whole, n)
    externals = {}
    for name, (_, ey, elesion) in ext.items():
        ew, ec = np.mean(ext_pw[name], axis=0), np.mean(ext_pc[name], axis=0)
        ef = fuse(ew, ec, w_all)
        externals[name] = {"n_lesions": int(elesion.sum()), **{
            arm: {"auroc_benign_vs_malignant": _lesion_auroc(ey, p, elesion, classes, n), "nll": _nll(ey, p),
                  **({} if arm == "whole image" else
                     {"paired_vs_whole": _paired(ey, p, ew, elesion, classes, n)})}
            for arm, p in (("whole image", ew), ("lesion crop", ec), (f"fused (weight {w_all:g})", ef))}}
    from _machine import machine_line

    result = {"folds": folds, "n_out_of_fold": int(y.size), "n_lesions": int(lesion.sum()),
              "fusion_weight_out_of_fold": w_all, "nll_by_weight": nll_by_w, "nested_weights": nested,
              "out_of_fold": rows, "external_fold_ensembles": externals, **machine_line()}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))

    def ci(d: dict) -> str:
        return f"{d['value']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"

    print(f"\nOut of fold, n = {y.size} ({int(lesion.sum())} lesions); whole-image weight chosen out of fold: "
          f"{w_all:g} (nested: {', '.join(f'{v:g}' for v in nested.values())})\n")
    print("| input | NLL | paired NLL difference vs whole | accuracy | macro AUROC | benign-vs-malignant AUROC | "
          "paired difference vs whole |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        p, q = r.get("paired_benign_vs_malignant_vs_whole"), r.get("paired_nll_vs_whole")
        diff = f"{p['difference']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]" if p else ""
        dnll = f"{q['value']:+.3f} [{q['ci95'][0]:+.3f}, {q['ci95'][1]:+.3f}]" if q else ""
        print(f"| {name} | {ci(r['nll'])} | {dnll} | {ci(r['accuracy'])} | {ci(r['macro_auroc'])} | "
              f"{ci(r['auroc_benign_vs_malignant'])} | {diff} |")
    for name, e in externals.items():
        print(f"\n{name} ({e['n_lesions']} lesions), fold ensembles, benign-vs-malignant AUROC:")
        for arm, r in e.items():
            if arm == "n_lesions":
                continue
            p = r.get("paired_vs_whole")
            print(f"- {arm}: {ci(r['auroc_benign_vs_malignant'])}, NLL {r['nll']:.3f}"
                  + (f"; vs whole {p['difference']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]" if p else ""))


if __name__ == "__main__":
    main()
