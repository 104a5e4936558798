"""BreastMNIST's random split leaks: which test images have a frame of the same lesion in training, and how the
shipped models score with and without them.

Every BreastMNIST image is the central square of a BUSI image at 28 x 28 (:mod:`breastdx.data.breastmnist_masks`
finds each one's source). BUSI holds several frames of many lesions; the grouped BUSI split (``busi-seg``'s
``split.json``) lists them as near-duplicate groups (:mod:`breastdx.data.duplicates`: pHash distance <= 10). A
test image *leaks* when its BUSI source, or another member of its source's group, is the source of a training or
validation image. This prints how many test images leak, and each model's test AUROC and accuracy (argmax) over
all 156, over the test images that do not leak and over those that do, with 95% percentile intervals over 2,000
resamples of the images. No training; the official test split is read for the figures, not to choose anything.

Usage::

    python benchmarks/breastmnist_leak.py [--models breastmnist,breastmnist-single,DIR] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

def leaking(data, data_root: Path, groups_file: Path) -> tuple[np.ndarray, dict]:
    """Per test image of ``data`` (a loaded BreastMNIST), whether a frame of its lesion is a training or validation
    image; and the counts (:func:`breastdx.data.breastmnist_masks.leaking_test_images`)."""
    from breastdx.data.breastmnist_masks import leaking_test_images

    return leaking_test_images(data, data_root, json.loads(groups_file.read_text())["groups"])


def figures(y: np.ndarray, p: np.ndarray) -> dict:
    """AUROC and accuracy (argmax) with 95% percentile intervals over resampled images."""
    from breastmnist_seed_ensemble import _ci

    from breastdx.evaluation.metrics import auroc

    a = _ci(lambda yy, pp: float(auroc(yy, pp[:, 1])), y, p)
    acc = _ci(lambda yy, pp: float(np.mean(pp.argmax(1) == yy)), y, p)
    return {"n": int(y.size), "malignant": int(y.sum()), "auroc": a["value"], "auroc_ci95": a["ci95"],
            "accuracy": acc["value"], "accuracy_ci95": acc["ci95"]}


def subsets(y: np.ndarray, p: np.ndarray, leak: np.ndarray) -> dict[str, dict]:
    """:func:`figures` over all test images, those that do not leak (``clean``) and those that do (``leaking``)."""
    return {"all": figures(y, p), "clean": figures(y[~leak], p[~leak]), "leaking": figures(y[leak], p[leak])}


def main() -> None:
    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.zoo import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="breastmnist,breastmnist-single", help="shipped names or model folders")
    parser.add_argument("--groups", type=Path, default=Path("src/breastdx/zoo/busi-seg/split.json"),
                        help="a BUSI split file with the near-duplicate groups")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    data = load_breastmnist(root)
    leak, counts = leaking(data, root, args.groups)
    print(f"official test split: {counts['test']} images; {counts['leaking']} ({counts['leaking_malignant']} malignant) "
          f"have a frame of the same lesion among the 624 training and validation images, {counts['clean']} "
          f"({counts['clean_malignant']} malignant) do not; the same BUSI image in both: "
          f"{counts['same_source_in_training']}")
    test = data.split("test")
    result: dict = {"counts": counts, "models": {}}
    print(f"{'model':<22} {'subset':<10} {'n':>4} {'AUROC':>22} {'accuracy':>22}")
    for name in args.models.split(","):
        model = ClassificationPredictor.from_dir(resolve_model(name, "breastmnist"), task="breastmnist",
                                                 dtype="float32")
        p = model.predict_proba(list(test.images))
        rows = subsets(test.labels, p, leak)
        result["models"][name] = rows
        for subset, r in rows.items():
            print(f"{name:<22} {subset:<10} {r['n']:>4} "
                  f"{r['auroc']:.3f} [{r['auroc_ci95'][0]:.3f}, {r['auroc_ci95'][1]:.3f}]".rjust(22) + " "
                  f"{r['accuracy']:.3f} [{r['accuracy_ci95'][0]:.3f}, {r['accuracy_ci95'][1]:.3f}]".rjust(22))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
