"""Does the shape of the lesion mask tell benign from malignant, and does that travel? BUSI's masks against the
segmenter's.

Malignant breast lesions are, in BI-RADS terms, irregular, not circumscribed and taller than wide, so a shape
classifier on the segmenter's mask is a candidate for a decision that travels across scanners (issue 13). This
benchmark measures it. For every benign or malignant image it computes four shape figures of the largest lesion
region, once on the reference mask and once on the shipped busi-seg model's mask:

* solidity: area / convex-hull area (1 for a convex region);
* circularity: 4 pi area / perimeter² (1 for a disc; :func:`skimage.measure.regionprops` perimeter);
* extent: area / bounding-box area;
* taller than wide: bounding-box height / width (BI-RADS "not parallel" orientation above 1).

It prints the benign-vs-malignant AUROC of each figure (signed so that higher means malignant on BUSI training
images), and of a logistic regression over the four fitted on the reference masks of BUSI's training and validation
images (grouped split of the shipped busi-seg), with 95% bootstrap intervals, on: BUSI's training + validation
images (reference masks, in-sample), BUSI's test images and each external folder (reference masks, then the
segmenter's). An image where the segmenter finds no lesion scores the lowest value (it would be called benign).

    python benchmarks/busi_mask_shape.py [--model src/breastdx/zoo/busi-seg] \
        [--external ../shared/data/breast_lesions_usg_sample ../shared/data/bus_uclm_sample]

Needs ``BREASTDX_DATA``. Nothing is trained but the four-weight regression; nothing is chosen on test or external
images.

References:
    Al-Dhabyani, W. et al. (2020). Dataset of breast ultrasound images. Data in Brief 28:104863.
    doi:10.1016/j.dib.2019.104863
    D'Orsi, C. J. et al. (2013). ACR BI-RADS Atlas, Breast Imaging Reporting and Data System. American College of
    Radiology (ultrasound lexicon: shape, orientation, margin).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import measure
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from breastdx.data.busi import load_busi, load_case
from breastdx.data.external import read_external, read_lesion_mask
from breastdx.evaluation.metrics import auroc, bootstrap_ci
from breastdx.inference.base import load_predictor

FIGURES = ("solidity", "circularity", "extent", "taller_than_wide")


def shape_figures(mask: np.ndarray) -> list[float] | None:
    """The :data:`FIGURES` of the largest region of a bool ``(H, W)`` mask, or None when it is empty."""
    regions = measure.regionprops(measure.label(mask))
    if not regions:
        return None
    r = max(regions, key=lambda p: p.area)
    h, w = r.bbox[2] - r.bbox[0], r.bbox[3] - r.bbox[1]
    return [r.solidity, 4 * np.pi * r.area / max(r.perimeter, 1.0) ** 2, r.extent, h / w]


def collect(model: str, data_root: Path, external: list[Path]) -> list[dict]:
    """One record per benign or malignant image: set, part, label, reference and predicted shape figures."""
    seg = load_predictor(model, task="busi-seg")
    split = json.loads((Path(model) / "split.json").read_text())
    part = {n: p for p in ("train", "val", "test") for n in split[p]}
    items = []  # (set, part, y, grey image, reference mask)
    for c in load_busi(data_root):
        if c.label != "normal" and c.name in part:
            image, mask = load_case(c, "gray")
            items.append(("BUSI", part[c.name], int(c.label == "malignant"), image, mask > 0))
    for folder in external:
        ext = read_external(folder)
        for i in range(len(ext)):
            if ext.labels[i] in ("benign", "malignant"):
                image = np.asarray(Image.open(ext.images[i]).convert("L"))
                items.append((folder.name, "external", int(ext.labels[i] == "malignant"), image,
                              read_lesion_mask(ext.mask_files(i), image.shape)))
    records = []
    for k in range(0, len(items), 16):
        batch = items[k:k + 16]
        for (name, p, y, image, mask), out in zip(batch, seg.predict([b[3] for b in batch])):
            records.append({"set": name, "part": p, "y": y, "reference": shape_figures(mask),
                            "segmenter": shape_figures(out.mask)})
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(Path(__file__).parents[1] / "src/breastdx/zoo/busi-seg"))
    ap.add_argument("--external", type=Path, nargs="*", default=None)
    a = ap.parse_args()
    root = Path(os.environ["BREASTDX_DATA"])
    external = a.external if a.external is not None else [root / "breast_lesions_usg_sample",
                                                          root / "bus_uclm_sample"]
    records = collect(a.model, root, external)
    fit = [r for r in records if r["set"] == "BUSI" and r["part"] in ("train", "val")]
    x_fit = np.array([r["reference"] for r in fit])
    y_fit = np.array([r["y"] for r in fit])
    sign = np.where([float(auroc(y_fit, x_fit[:, j])) >= 0.5 for j in range(len(FIGURES))], 1.0, -1.0)
    regression = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_fit, y_fit)
    columns = [*FIGURES, "regression"]
    print("| images | masks | n (malignant) | no lesion found | " + " | ".join(columns) + " |")
    print("|---" * (4 + len(columns)) + "|")
    groups = [("BUSI train + val (in-sample)", lambda r: r["set"] == "BUSI" and r["part"] != "test", ("reference",)),
              ("BUSI test", lambda r: r["set"] == "BUSI" and r["part"] == "test", ("reference", "segmenter"))]
    groups += [(f.name, lambda r, f=f: r["set"] == f.name, ("reference", "segmenter")) for f in external]
    for title, keep, sources in groups:
        chosen = [r for r in records if keep(r)]
        y = np.array([r["y"] for r in chosen])
        for source in sources:
            missing = np.array([r[source] is None for r in chosen])
            x = np.array([r[source] if r[source] is not None else [np.nan] * len(FIGURES) for r in chosen])
            scores = x * sign
            reg = np.full(len(chosen), -np.inf)
            if (~missing).any():
                reg[~missing] = regression.predict_proba(x[~missing])[:, 1]
            cells = []
            for s in [*scores.T, reg]:
                s = np.where(np.isfinite(s), s, -1e9)  # no lesion found: scored as the most benign
                ci = bootstrap_ci(y, s, metric_fn=lambda yy, pp, dd: {"auroc": auroc(yy, pp)})["auroc"]
                cells.append(f"{ci['value']:.3f} [{ci['ci95'][0]:.3f}, {ci['ci95'][1]:.3f}]")
            print(f"| {title} | {source} | {len(y)} ({int(y.sum())}) | {int(missing.sum())} | " + " | ".join(cells)
                  + " |")


if __name__ == "__main__":
    main()
