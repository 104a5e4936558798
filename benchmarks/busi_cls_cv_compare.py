"""busi-cls recipes compared by grouped 5-fold cross-validation: out-of-fold figures and paired differences.

Each argument is a folder of busi-cls runs ``f0`` ... ``f4`` trained on the folds of ``breastdx train busi-seg
--cv-folds 5`` with one recipe (``benchmarks/busi_cls_cv_train.sh``; e.g. ``--imbalance weighted_loss`` against
``--imbalance sampler``). Every fold's model predicts that fold's held-out images (its split's ``test`` part; the base
split's test cases are never read; a crop model crops them with its own segmenter), the out-of-fold probabilities are
pooled, and for each recipe this prints, with 95% bootstrap intervals over images: NLL, accuracy and balanced
accuracy (argmax), macro AUROC, the sensitivity of each class, and the benign-vs-malignant AUROC over the lesion
images; then each recipe minus the first, paired over the same images (NLL, balanced accuracy, macro AUROC, and
benign vs malignant), over images and over near-duplicate groups (the frames of one lesion resampled together, the
intervals to quote). With ``--external``, each recipe's fold models also predict labelled folders from other
sites (default: the data root's BrEaST and BUS-UCLM samples): the benign-vs-malignant AUROC over their lesions of
each fold model (mean and sd) and of the fold ensemble (the mean probability), with the ensemble's paired
difference against the first recipe. They show whether a change travels; they choose nothing (issue 13).

Usage::

    python benchmarks/busi_cls_cv_compare.py BASELINE_DIR OTHER_DIR [...] [--external [DIR ...]] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from busi_cls_cv_lesion import _fold_images, _nll_ci, _paired_nll
from busi_lesion_aware import _external, _lesion_auroc, _nll, _paired


def _out_of_fold(arm: Path, folds: list[str], data_root: Path) -> tuple[np.ndarray, np.ndarray, list[str], list]:
    """Labels, probabilities, class names and case ids of one recipe's folds, pooled."""
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.lesion_crop import LesionCropper

    labels, probs, ids, classes = [], [], [], []
    for fold in folds:
        model_dir = arm / fold / "model"
        model = ClassificationPredictor.from_dir(model_dir, task="busi-cls")
        classes = list(model.class_names)
        images, y, names = _fold_images(model_dir / "split.json", data_root)
        cropper = LesionCropper.for_classifier(model.meta)
        if cropper is not None:
            images = cropper.crops(images)
        labels.append(y)
        probs.append(model.predict_proba(images))
        ids += list(names)
    return np.concatenate(labels), np.concatenate(probs), classes, ids


def _paired_statistic(fn, a: np.ndarray, b: np.ndarray, labels: np.ndarray, n_boot: int) -> dict:
    """``fn(labels, a) - fn(labels, b)`` with a 95% percentile interval over paired resamples of the images."""
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, labels.size, labels.size)
        if np.unique(labels[idx]).size < 3:
            continue
        diffs.append(fn(labels[idx], a[idx]) - fn(labels[idx], b[idx]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"value": float(fn(labels, a) - fn(labels, b)), "ci95": [float(low), float(high)], "n_boot": len(diffs)}


def _benign_vs_malignant(labels: np.ndarray, prob: np.ndarray, classes: list[str]) -> float:
    """AUROC of P(malignant) between the benign and malignant images (normal images left out), no interval."""
    from sklearn.metrics import roc_auc_score

    lesion, m = labels != classes.index("normal"), classes.index("malignant")
    return float(roc_auc_score(labels[lesion] == m, prob[lesion, m]))


def _group_ids(arm: Path, folds: list[str], ids: list) -> np.ndarray:
    """The near-duplicate group of each out-of-fold case (its own name where it is in none), from the folds' split
    files: the frames of one lesion are resampled together."""
    group_of = {}
    for fold in folds:
        for members in json.loads((arm / fold / "model" / "split.json").read_text()).get("groups", []):
            for name in members:
                group_of.setdefault(name, "|".join(sorted(members)))
    return np.asarray([group_of.get(str(i), str(i)) for i in ids])


def _paired_by_group(fn, a: np.ndarray, b: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_boot: int) -> dict:
    """``fn(labels, a) - fn(labels, b)`` with a 95% interval from resampling near-duplicate groups (paired)."""
    from breastdx.evaluation.ci import patient_bootstrap

    def diff(idx: np.ndarray) -> float:
        try:
            return fn(labels[idx], a[idx]) - fn(labels[idx], b[idx])
        except ValueError:  # a resample without some class
            return float("nan")

    r = patient_bootstrap(diff, groups, n_boot=n_boot, seed=0)
    return {"value": r["value"], "ci95": r["ci95"], "n_groups": r["n_patients"]}


def _external_figures(arms: list[Path], folds: list[str], folders: list[Path], classes: list[str],
                      n_boot: int) -> dict:
    """Per external folder and recipe: each fold model's benign-vs-malignant AUROC (mean, sd) and the fold
    ensemble's, with the ensemble's paired difference against the first recipe."""
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.lesion_crop import LesionCropper

    out = {}
    for folder in folders:
        images, labels, lesion = _external(folder, classes)
        recipes, ensembles = {}, {}
        for arm in arms:
            probs = []
            for fold in folds:
                model = ClassificationPredictor.from_dir(arm / fold / "model", task="busi-cls")
                cropper = LesionCropper.for_classifier(model.meta)
                probs.append(model.predict_proba(cropper.crops(images) if cropper is not None else images))
            each = [_benign_vs_malignant(labels, p, classes) for p in probs]
            ensembles[arm.name] = np.mean(probs, axis=0)
            recipes[arm.name] = {"fold_models": each, "fold_models_mean": float(np.mean(each)),
                                 "fold_models_sd": float(np.std(each, ddof=1)),
                                 "fold_ensemble": _lesion_auroc(labels, ensembles[arm.name], lesion, classes, n_boot)}
            if arm != arms[0]:
                recipes[arm.name]["ensemble_paired_vs_" + arms[0].name] = _paired(
                    labels, ensembles[arm.name], ensembles[arms[0].name], lesion, classes, n_boot)
        out[folder.name] = {"n_lesions": int(lesion.sum()), "recipes": recipes}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arms", nargs="+", type=Path)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("BREASTDX_DATA", "../shared/data")))
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--external", nargs="*", type=Path, default=None,
                        help="also score labelled folders from elsewhere (no folder named: the data root's "
                             "breast_lesions_usg_sample and bus_uclm_sample)")
    args = parser.parse_args()
    if args.external == []:
        args.external = [args.data_root / "breast_lesions_usg_sample", args.data_root / "bus_uclm_sample"]

    from breastdx.evaluation.classification import classification_metrics, multiclass_metrics

    folds = sorted(set.intersection(*[{p.name for p in a.iterdir() if (p / "model" / "meta.json").is_file()}
                                      for a in args.arms]))
    if len(folds) < 2:
        raise SystemExit("Fewer than two folds trained in every recipe.")
    pooled = {}
    for arm in args.arms:
        pooled[arm.name] = _out_of_fold(arm, folds, args.data_root)
    base = args.arms[0].name
    y, _, classes, ids = pooled[base]
    for name, (labels, _, _, arm_ids) in pooled.items():
        if arm_ids != ids or not np.array_equal(labels, y):
            raise SystemExit(f"{name}: its folds hold other images than {base}'s: not the same cross-validation.")
    lesion = y != classes.index("normal")
    n = args.n_bootstrap

    def balanced(labels: np.ndarray, p: np.ndarray) -> float:
        return float(multiclass_metrics(labels, p, classes)["balanced_accuracy"])

    def macro(labels: np.ndarray, p: np.ndarray) -> float:
        return float(multiclass_metrics(labels, p, classes)["macro_auroc"])

    groups = _group_ids(args.arms[0], folds, ids)

    def benign_vs_malignant(labels: np.ndarray, p: np.ndarray) -> float:
        return _benign_vs_malignant(labels, p, classes)

    rows = {}
    for name, (_, p, _, _) in pooled.items():
        m = classification_metrics(y, p, classes, "malignant", None, n_boot=n, seed=0)
        r = {"nll": _nll_ci(y, p, n), **{k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_auroc")},
             **{f"sensitivity_{c}": m[f"sensitivity_{c}"] for c in classes},
             "auroc_benign_vs_malignant": _lesion_auroc(y, p, lesion, classes, n)}
        if name != base:
            q = pooled[base][1]
            r["paired_vs_" + base] = {"nll": _paired_nll(y, p, q, n),
                                      "balanced_accuracy": _paired_statistic(balanced, p, q, y, n),
                                      "macro_auroc": _paired_statistic(macro, p, q, y, n),
                                      "auroc_benign_vs_malignant": _paired(y, p, q, lesion, classes, n)}
            # the same over near-duplicate groups (frames of one lesion together): the intervals to quote
            r["paired_by_group_vs_" + base] = {k: _paired_by_group(fn, p, q, y, groups, n) for k, fn in
                                               (("nll", _nll), ("macro_auroc", macro),
                                                ("auroc_benign_vs_malignant", benign_vs_malignant))}
        rows[name] = r
    externals = _external_figures(args.arms, folds, args.external or [], classes, n)
    from _machine import machine_line

    result = {"folds": folds, "n_out_of_fold": int(y.size), "n_lesions": int(lesion.sum()), "recipes": rows,
              "external": externals, **machine_line()}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))

    def ci(d: dict) -> str:
        v = d.get("value", d.get("difference"))
        return f"{v:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"

    keys = ["nll", "accuracy", "balanced_accuracy", "macro_auroc", *[f"sensitivity_{c}" for c in classes],
            "auroc_benign_vs_malignant"]
    print(f"\nOut of fold, n = {y.size} ({int(lesion.sum())} lesions), folds {', '.join(folds)}\n")
    print("| recipe | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(ci(r[k]) for k in keys) + " |")
    for name, r in rows.items():
        for k, d in r.get("paired_vs_" + base, {}).items():
            print(f"{name} - {base}, {k}: {ci(d)}")
        for k, d in r.get("paired_by_group_vs_" + base, {}).items():
            print(f"{name} - {base}, {k}, over {d['n_groups']} near-duplicate groups: {ci(d)}")
    for folder, e in externals.items():
        print(f"\n{folder} ({e['n_lesions']} lesions), benign-vs-malignant AUROC:")
        for name, r in e["recipes"].items():
            paired = r.get("ensemble_paired_vs_" + base)
            print(f"- {name}: fold models {r['fold_models_mean']:.3f} (sd {r['fold_models_sd']:.3f}); fold ensemble "
                  f"{ci(r['fold_ensemble'])}" + (f"; minus {base} {ci(paired)}" if paired else ""))


if __name__ == "__main__":
    main()
