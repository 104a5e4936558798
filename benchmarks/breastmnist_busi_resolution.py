"""BreastMNIST's cases at BUSI's resolution: does a model that reads the full images beat the 28 x 28 benchmark?

Every BreastMNIST image is the central square of a BUSI image at 28 x 28 (:mod:`breastdx.data.breastmnist_masks`),
so the official split can be rebuilt as a BUSI split file: the same cases and labels in train / val / test, each
as its full BUSI file (``prepare``). A busi-seg U-Net trained on the training sources' lesion masks and a multi-task
busi-cls from it then read the cases at 128 x 128 instead of 28 x 28 (the recipe of busi-cls's cross-validation).
``score`` puts them beside the shipped 28 x 28 ``breastmnist`` ensemble on the official validation and test images:
P(malignant) of each model (busi-cls: its ``p_malignant`` on the full BUSI file), and their mean (fixed in advance,
equal weights, no choice on these images), with AUROC (malignant vs rest), accuracy at the most probable class, 95%
percentile intervals over 2,000 resamples of the images and the paired AUROC difference against the shipped model.

The split is BreastMNIST's own, random: 59 test images are near-duplicates of training images (see
``benchmarks/zoo_near_duplicates.py``), as in the 28 x 28 benchmark. The models read the whole BUSI image, not
MedMNIST+'s central square at 128, so they see a little more than the 28 x 28 model does.

Usage::

    python benchmarks/breastmnist_busi_resolution.py prepare runs/bm-busi/split.json
    breastdx train busi-seg --split-file runs/bm-busi/split.json ... --out runs/bm-busi/seg   (see README)
    breastdx train busi-cls --split-file runs/bm-busi/split.json --init-busi-seg runs/bm-busi/seg/model ... \\
        --out runs/bm-busi/cls
    python benchmarks/breastmnist_busi_resolution.py score runs/bm-busi/cls/model [--json F]

Cross-validated (the test split not read): ``breastdx train busi-seg --split-file runs/bm-busi/split.json
--cv-folds 5 ...`` and ``benchmarks/busi_cls_cv_train.sh`` on its folds; ``folds`` writes the same folds as
BreastMNIST files for the 28 x 28 recipe (``breastmnist_cv_seeds.py commands DIR --seeds 0``); ``cv`` pools the
out-of-fold P(malignant) of both recipes and of their mean over the 624 training and validation images::

    python benchmarks/breastmnist_busi_resolution.py folds runs/bm-busi/seg-cv runs/bm-busi/small-cv
    python benchmarks/breastmnist_busi_resolution.py cv runs/bm-busi/small-cv runs/bm-busi/cls-cv [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def prepare(out: Path, root: Path) -> dict:
    """Write the BUSI split file of BreastMNIST's official split (each image's BUSI source, matched one to one)."""
    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.data.breastmnist_masks import _busi_index, match_splits
    from breastdx.zoo import shipped_models

    cases, thumbs, _ = _busi_index(root, masks=False)
    matches = match_splits(load_breastmnist(root), thumbs, cases)
    base = json.loads((shipped_models()["busi-seg"] / "split.json").read_text())
    split = {k: base[k] for k in ("schema_version", "dataset", "data_checksum", "hash_threshold", "breastdx_version")}
    split.update(seed=0, ratios=[0.7, 0.1, 0.2], groups=[], conflicts=[], excluded=[],
                 note="BreastMNIST's official (random) split as BUSI cases: benchmarks/breastmnist_busi_resolution.py")
    split.update({s: [m.case for m in ms] for s, ms in matches.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(split, indent=1) + "\n")
    return {s: len(split[s]) for s in ("train", "val", "test")}


def folds(seg_cv: Path, out: Path, root: Path) -> None:
    """The folds of ``breastdx train busi-seg --split-file SPLIT --cv-folds K`` (its ``folds.json``) as BreastMNIST
    files in MedMNIST's layout, ``out/f<k>/breastmnist.npz`` (``breastmnist_cv_seeds.py``'s layout): the same
    cases in train / val / test, as 28 x 28 images, so that the shipped 28 x 28 recipe runs on the very folds."""
    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.data.breastmnist_masks import _busi_index, match_splits

    data = load_breastmnist(root)
    cases, thumbs, _ = _busi_index(root, masks=False)
    matches = match_splits(data, thumbs, cases, ("train", "val"))
    parts = [data.split(s) for s in ("train", "val")]
    images = np.concatenate([p.images for p in parts])
    stored = np.concatenate([p.medmnist_labels for p in parts])
    index = {m.case: i for i, m in enumerate(matches["train"] + matches["val"])}
    record = json.loads((seg_cv / "folds.json").read_text())
    for f, fold in enumerate(record["folds"]):
        test, val = [index[n] for n in fold["test"]], [index[n] for n in fold["val"]]
        held = set(test) | set(val)
        split = {"train": np.array([i for i in range(len(images)) if i not in held]), "val": np.array(val),
                 "test": np.array(test)}
        folder = out / f"f{f}"
        folder.mkdir(parents=True, exist_ok=False)
        np.savez_compressed(folder / "breastmnist.npz", **{f"{s}_images": images[i] for s, i in split.items()},
                            **{f"{s}_labels": stored[i].reshape(-1, 1) for s, i in split.items()})
        (folder / "fold.json").write_text(json.dumps(
            {"source": str(data.path), "source_sha256": data.sha256, "folds": len(record["folds"]), "fold": f,
             "from": str(seg_cv / "folds.json"), "pool": "official train (indices 0-545) + val (546-623)",
             **{s: i.tolist() for s, i in split.items()}, "test_cases": fold["test"]}))
        print(f"f{f}: train {split['train'].size}, val {split['val'].size}, test {split['test'].size} "
              f"({int((stored[split['test']] == 0).sum())} malignant)")


def _figures(y: np.ndarray, arms: dict[str, np.ndarray], baseline: str) -> dict[str, dict]:
    """Per arm (P(malignant) per image): AUROC and accuracy (P >= 0.5) with 95% intervals over resampled images,
    and, but for ``baseline``, the paired AUROC difference against it (``minus_shipped``)."""
    from breastmnist_seed_ensemble import _ci

    from breastdx.evaluation.metrics import auroc
    from breastdx.evaluation.paired import paired_auroc_test

    rows = {}
    for name, p in arms.items():
        two = np.stack([1 - p, p], 1)
        a = _ci(lambda yy, pp: float(auroc(yy, pp[:, 1])), y, two)
        acc = _ci(lambda yy, pp: float(np.mean((pp[:, 1] >= 0.5) == yy)), y, two)
        rows[name] = {"auroc": a["value"], "auroc_ci95": a["ci95"], "accuracy": acc["value"],
                      "accuracy_ci95": acc["ci95"]}
        if name != baseline:
            t = paired_auroc_test(y, p, arms[baseline], n_boot=2000, seed=0)
            rows[name]["minus_shipped"] = {k: t[k] for k in ("difference", "ci95", "p_value")}
    return rows


def cross_validated(small_cv: Path, large_cv: Path, root: Path) -> dict:
    """Pooled out-of-fold P(malignant) of the 28 x 28 recipe (``small_cv/f<k>/s0``) and of the BUSI-resolution
    recipe (``large_cv/f<k>/model`` on the BUSI files of the same held-out cases), and of their mean: AUROC and
    accuracy with intervals, and the paired differences."""
    from breastdx.data.busi import find_busi_root, scan_busi
    from breastdx.data.images import read_image
    from breastdx.inference.classifier import ClassificationPredictor

    files = {c.name: c.image for c in scan_busi(find_busi_root(root))}
    ys, p28, pbusi = [], [], []
    for folder in sorted(p for p in small_cv.glob("f*") if p.is_dir()):
        fold = json.loads((folder / "fold.json").read_text())
        data = np.load(folder / "breastmnist.npz")
        ys.append((data["test_labels"].reshape(-1) == 0).astype(int))
        small = ClassificationPredictor.from_dir(folder / "s0" / "model", task="breastmnist", dtype="float32")
        p28.append(small.predict_proba(list(data["test_images"]))[:, 1])
        large = ClassificationPredictor.from_dir(large_cv / folder.name / "model", task="busi-cls", dtype="float32")
        probs = large.predict_proba([read_image(files[n], mode="gray").array for n in fold["test_cases"]])
        pbusi.append(probs[:, large.class_names.index("malignant")])
    y = np.concatenate(ys)
    arms = {"28 x 28 recipe (seed 0)": np.concatenate(p28), "busi-cls recipe at 128 (BUSI files)": np.concatenate(pbusi)}
    arms["mean of the two"] = (arms["28 x 28 recipe (seed 0)"] + arms["busi-cls recipe at 128 (BUSI files)"]) / 2
    return {"out_of_fold": {"n": int(y.size), "malignant": int(y.sum()),
                            "models": _figures(y, arms, "28 x 28 recipe (seed 0)")}}


def score(model_dir: Path, root: Path) -> dict:
    """P(malignant) of the shipped 28 x 28 ensemble, of ``model_dir`` on the BUSI files, and of their mean, on the
    official validation and test images; AUROC and accuracy with intervals, paired AUROC differences."""
    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.data.breastmnist_masks import _busi_index, match_splits
    from breastdx.data.busi import find_busi_root, scan_busi
    from breastdx.data.images import read_image
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.zoo import resolve_model

    data = load_breastmnist(root)
    cases, thumbs, _ = _busi_index(root, masks=False)
    matches = match_splits(data, thumbs, cases)
    files = {c.name: c.image for c in scan_busi(find_busi_root(root))}
    small = ClassificationPredictor.from_dir(resolve_model("breastmnist", "breastmnist"), task="breastmnist",
                                             dtype="float32")
    large = ClassificationPredictor.from_dir(model_dir, task="busi-cls", dtype="float32")
    malignant = large.class_names.index("malignant")
    out: dict = {}
    for s in ("val", "test"):
        part = data.split(s)
        y = np.asarray(part.labels)
        p28 = small.predict_proba(list(part.images))[:, 1]
        full = [read_image(files[m.case], mode="gray").array for m in matches[s]]
        p3 = large.predict_proba(full)
        pbusi = p3[:, malignant]
        arms = {"breastmnist (28 x 28, shipped)": p28, "busi-cls recipe at 128 (BUSI files)": pbusi,
                "mean of the two": (p28 + pbusi) / 2}
        rows = _figures(y, arms, "breastmnist (28 x 28, shipped)")
        if s == "test":  # the three-class model's own argmax, for the record
            rows["busi-cls recipe at 128 (BUSI files)"]["accuracy_3class_argmax_malignant"] = float(
                np.mean((p3.argmax(1) == malignant) == y))
        out[s] = {"n": int(y.size), "malignant": int(y.sum()), "models": rows}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    f = sub.add_parser("folds")
    f.add_argument("seg_cv", type=Path)
    f.add_argument("out", type=Path)
    c = sub.add_parser("cv")
    c.add_argument("small_cv", type=Path)
    c.add_argument("large_cv", type=Path)
    c.add_argument("--json", type=Path)
    s = sub.add_parser("score")
    s.add_argument("model", type=Path)
    s.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    if args.cmd == "prepare":
        print(prepare(args.out, root))
        return 0
    if args.cmd == "folds":
        folds(args.seg_cv, args.out, root)
        return 0
    result = (cross_validated(args.small_cv, args.large_cv, root) if args.cmd == "cv"
              else score(args.model, root))
    for split, r in result.items():
        print(f"{split}: {r['n']} images ({r['malignant']} malignant)")
        for name, m in r["models"].items():
            line = (f"  {name:<38} AUROC {m['auroc']:.3f} [{m['auroc_ci95'][0]:.3f}, {m['auroc_ci95'][1]:.3f}]  "
                    f"accuracy {m['accuracy']:.3f} [{m['accuracy_ci95'][0]:.3f}, {m['accuracy_ci95'][1]:.3f}]")
            if "minus_shipped" in m:
                d = m["minus_shipped"]
                line += f"  minus shipped {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
            print(line)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
