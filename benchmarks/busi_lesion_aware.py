"""Lesion-aware classification of BUSI: the whole image, the lesion crop, and the two fused, in one report.

The whole-image model is a busi-cls model (default: the shipped one). Each crop model is a busi-cls run trained
with ``--lesion-crop SEGMENTER`` (the busi-seg model that finds the lesion; :mod:`breastdx.inference.lesion_crop`).
For each crop model, the fused prediction is ``w * P(whole) + (1 - w) * P(crop)``, with ``w`` chosen on the
validation split by negative log-likelihood (:func:`breastdx.inference.lesion_crop.choose_fusion_weight`), or
given (``--weight``, e.g. chosen out of fold by ``busi_cls_cv_lesion.py``); the test split and the external folders
are read after that choice. Printed, as JSON lines and a Markdown table:

* validation NLL and macro AUROC (what chooses), test accuracy (argmax), macro AUROC, malignant-vs-rest AUROC and
  benign-vs-malignant AUROC over the lesion images, with 95% bootstrap intervals;
* on each external folder (``--external``; never used to choose): the benign-vs-malignant AUROC over its lesions;
* paired bootstrap differences of the benign-vs-malignant AUROC, fused - whole, on the test split and each folder;
* on each external folder with lesion masks, the crop model on crops at the reference mask instead of the
  segmenter's (does the segmenter limit it?).

Usage::

    python benchmarks/busi_lesion_aware.py CROP_RUN [CROP_RUN ...] [--whole busi-cls] [--weight W]
        [--write-fusion 'HOW W WAS CHOSEN'] [--external DIR ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _busi_parts(split_file: Path, data_root: Path) -> dict:
    from breastdx.tasks.busi_cls import BusiClsConfig, read

    with tempfile.TemporaryDirectory() as tmp:  # the reader writes the split it read: not into the run folder
        data = read(BusiClsConfig(), data_root, split_file, Path(tmp) / "split.json")
        return {s: ([data.parts[s].read(i)[0] for i in range(len(data.parts[s]))], data.parts[s].labels)
                for s in ("val", "test")}


def _check_same_split(model_dirs: list[Path], split_file: Path) -> None:
    """Stop unless each model folder's ``split.json`` has the validation and test cases of ``split_file``: the test
    split is read as held out by every model, and the validation split chooses the weight and threshold."""
    reference = json.loads(split_file.read_text())
    for model_dir in model_dirs:
        own = model_dir / "split.json"
        if not own.is_file():
            raise SystemExit(f"{model_dir}: no split.json, so its test cases cannot be checked against {split_file}.")
        split = json.loads(own.read_text())
        for part in ("val", "test"):
            if sorted(split[part]) != sorted(reference[part]):
                raise SystemExit(f"{model_dir} was trained on another split than {split_file} (its {part} cases "
                                 f"differ): its {part} figures would not be held out.")


def _external(folder: Path, classes: list[str]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    images, labels, lesion, _ = _external_with_masks(folder, classes)
    return images, labels, lesion


def _external_with_masks(folder: Path, classes: list[str]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list]:
    """Images, label indices, lesion flags and the reference lesion masks (None where the folder gives none)."""
    from breastdx.data.external import label_indices, read_external, read_lesion_mask
    from breastdx.data.images import read_image

    data = read_external(folder)
    labels = label_indices(data, classes, {})
    images = [read_image(p, mode="gray").array for p in data.images]
    lesion = np.asarray([lab != "normal" for lab in data.labels])
    masks = [read_lesion_mask(data.mask_files(i), im.shape[:2]) if data.mask_files(i) else None
             for i, im in enumerate(images)]
    return images, labels, lesion, masks


def _figures(labels: np.ndarray, prob: np.ndarray, classes: list[str], n_boot: int) -> dict:
    from breastdx.evaluation.classification import classification_metrics

    m = classification_metrics(labels, prob, classes, "malignant", None, n_boot=n_boot, seed=0)
    lesion = labels != classes.index("normal")
    sub = classification_metrics(labels[lesion], prob[lesion], classes, "malignant", None, n_boot=n_boot, seed=0)
    return {"accuracy": m["accuracy"], "macro_auroc": m["macro_auroc"], "auroc_malignant_vs_rest": m["auroc"],
            "auroc_benign_vs_malignant": sub["auroc"]}


def _lesion_auroc(labels: np.ndarray, prob: np.ndarray, lesion: np.ndarray, classes: list[str], n_boot: int) -> dict:
    from breastdx.evaluation.classification import classification_metrics

    return classification_metrics(labels[lesion], prob[lesion], classes, "malignant", None, n_boot=n_boot,
                                  seed=0)["auroc"]


def _paired(labels: np.ndarray, a: np.ndarray, b: np.ndarray, lesion: np.ndarray, classes: list[str],
            n_boot: int) -> dict:
    from breastdx.evaluation.paired import paired_auroc_test

    m = classes.index("malignant")
    r = paired_auroc_test((labels[lesion] == m).astype(int), a[lesion, m], b[lesion, m], n_boot=n_boot, seed=0)
    return {"difference": r["difference"], "ci95": r["ci95"], "p_value": r["p_value"]}


def _nll(labels: np.ndarray, prob: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(prob[np.arange(labels.size), labels], 1e-12, 1.0))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("crop_runs", nargs="+", type=Path, help="busi-cls run folders trained with --lesion-crop")
    parser.add_argument("--whole", default="busi-cls", help="whole-image busi-cls model: shipped name or folder")
    parser.add_argument("--external", nargs="*", type=Path, default=None,
                        help="labelled folders from elsewhere (default: the data root's breast_lesions_usg_sample "
                             "and bus_uclm_sample)")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("BREASTDX_DATA", "../shared/data")))
    parser.add_argument("--weight", type=float, default=None,
                        help="fix the whole image's fusion weight (e.g. the one cross-validation chose: "
                             "busi_cls_cv_lesion.py) instead of choosing it on the validation split")
    parser.add_argument("--target-sensitivity", type=float, default=0.9,
                        help="the fused operating threshold on P(malignant) reaches this sensitivity on validation")
    parser.add_argument("--write-fusion", default="",
                        help="write the fusion (weight, threshold, how chosen) into the crop model's meta.json, "
                             "with this text saying how the weight was chosen")
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    args = parser.parse_args()
    if args.external is None:
        args.external = [args.data_root / "breast_lesions_usg_sample", args.data_root / "bus_uclm_sample"]

    from _machine import machine_line
    from breastdx.data.lesion_crop import crop, lesion_box
    from breastdx.evaluation.classification import choose_threshold, classification_metrics
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.lesion_crop import LesionCropper, choose_fusion_weight, fuse
    from breastdx.runs import write_json
    from breastdx.zoo import resolve_model

    whole_dir = Path(resolve_model(args.whole, "busi-cls"))
    whole = ClassificationPredictor.from_dir(whole_dir, task="busi-cls")
    classes = list(whole.class_names)
    first = args.crop_runs[0] / "model"
    _check_same_split([whole_dir, *(run / "model" for run in args.crop_runs)], first / "split.json")
    sets = _busi_parts(first / "split.json", args.data_root)
    reference = {}
    for f in args.external:
        images, labels, lesion, masks = _external_with_masks(f, classes)
        sets[f.name] = (images, labels, lesion)
        reference[f.name] = masks
    p_whole = {s: whole.predict_proba(v[0]) for s, v in sets.items()}
    results = {"whole_model": str(args.whole), **machine_line()}
    rows = []

    def row(name: str, probs: dict, extra: dict) -> dict:
        val_labels = sets["val"][1]
        r = {"model": name, **extra, "val_nll": _nll(val_labels, probs["val"]),
             "val_macro_auroc": _figures(val_labels, probs["val"], classes, 0)["macro_auroc"]["value"],
             "test": _figures(sets["test"][1], probs["test"], classes, args.n_bootstrap)}
        for ext in args.external:
            _, labels, lesion = sets[ext.name]
            r[ext.name] = {"n_lesions": int(lesion.sum()),
                           "auroc_benign_vs_malignant": _lesion_auroc(labels, probs[ext.name], lesion, classes,
                                                                      args.n_bootstrap)}
        print(json.dumps(r), flush=True)
        rows.append(r)
        return r

    row("whole image", p_whole, {})
    for run in args.crop_runs:
        model_dir = run / "model"
        crop_model = ClassificationPredictor.from_dir(model_dir, task="busi-cls")
        cropper = LesionCropper.for_classifier(crop_model.meta)
        if cropper is None:
            raise SystemExit(f"{model_dir}: not trained with --lesion-crop.")
        p_crop = {s: crop_model.predict_proba(cropper.crops(v[0])) for s, v in sets.items()}
        label = f"crop {run.name} (margin {cropper.margin:g}, {crop_model.preprocessing.image_size} px)"
        oracle = {}
        for name, masks in reference.items():  # the crop at the reference mask: is the segmenter what limits it?
            images, labels, lesion = sets[name]
            if all(m is not None for m, k in zip(masks, lesion) if k):
                boxes = [lesion_box(m if m is not None else np.zeros(im.shape[:2], bool), cropper.margin)
                         for im, m in zip(images, masks)]
                p_ref = crop_model.predict_proba([crop(im, b) for im, b in zip(images, boxes)])
                oracle[name] = _lesion_auroc(labels, p_ref, lesion, classes, args.n_bootstrap)
        row(label, p_crop, {"run": str(run), "reference_mask_crop": oracle})
        w, nll = choose_fusion_weight(sets["val"][1], p_whole["val"], p_crop["val"])
        if args.weight is not None:
            w = args.weight
        fused = {s: fuse(p_whole[s], p_crop[s], w) for s in sets}
        m = classes.index("malignant")
        threshold = choose_threshold((sets["val"][1] == m).astype(int), fused["val"][:, m], args.target_sensitivity)
        operating = classification_metrics(sets["test"][1], fused["test"], classes, "malignant", threshold,
                                           n_boot=args.n_bootstrap, seed=0)
        if args.write_fusion:
            meta_path = model_dir / "meta.json"
            meta = json.loads(meta_path.read_text())
            meta["fusion"] = {"whole_model": args.whole, "whole_weight": w, "threshold": threshold,
                              "target_sensitivity": args.target_sensitivity, "weight_chosen_by": args.write_fusion,
                              "threshold_chosen_on": "the validation split of split.json"}
            write_json(meta, meta_path)  # NaN as null
        paired = {}
        for s in ("test", *[e.name for e in args.external]):
            labels = sets[s][1]
            lesion = labels != classes.index("normal") if s == "test" else sets[s][2]
            paired[s] = _paired(labels, fused[s], p_whole[s], lesion, classes, args.n_bootstrap)
        row(f"fused {run.name} (whole weight {w:g})", fused,
            {"run": str(run), "whole_weight": w, "val_nll_by_weight": nll, "paired_vs_whole": paired,
             "threshold": threshold, "test_at_threshold": {k: operating[k] for k in (
                 "sensitivity", "specificity", "ppv", "npv", "balanced_accuracy")}})
    results["rows"] = rows
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))

    def ci(d: dict) -> str:
        return f"{d['value']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"

    ext_names = [e.name for e in args.external]
    print("\n| model | val NLL | val macro AUROC | test accuracy | test macro AUROC | test benign-vs-malignant AUROC | "
          + " | ".join(f"{e} benign-vs-malignant AUROC" for e in ext_names) + " |")
    print("|" + "---|" * (6 + len(ext_names)))
    for r in rows:
        t = r["test"]
        print(f"| {r['model']} | {r['val_nll']:.3f} | {r['val_macro_auroc']:.3f} | {ci(t['accuracy'])} | "
              f"{ci(t['macro_auroc'])} | {ci(t['auroc_benign_vs_malignant'])} | "
              + " | ".join(ci(r[e]["auroc_benign_vs_malignant"]) for e in ext_names) + " |")
    for r in rows:
        for name, a in r.get("reference_mask_crop", {}).items():
            print(f"{r['model']}, cropped at the reference mask instead of the segmenter's, {name} "
                  f"benign-vs-malignant AUROC: {ci(a)}")
        if "test_at_threshold" in r:
            print(f"{r['model']}: threshold {r['threshold']:.3f} on the fused P(malignant) (validation sensitivity "
                  f"{args.target_sensitivity:g}); test " + ", ".join(f"{k} {ci(v)}" for k, v in
                                                                   r["test_at_threshold"].items()))
        for s, p in r.get("paired_vs_whole", {}).items():
            print(f"{r['model']} - whole image, benign-vs-malignant AUROC on {s}: {p['difference']:+.3f} "
                  f"[{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}], p = {p['p_value']:.3f}")


if __name__ == "__main__":
    main()
