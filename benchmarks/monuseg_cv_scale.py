"""Would monuseg do better on slides of unseen sites if they were predicted at another scale? Scored out of fold.

Nuclei differ in size between sites (the E2 tiles' large vesicular tumour nuclei are the ones the fold models miss
most). For a ``breastdx train monuseg --cv-folds K`` run, each training tile is predicted by the fold model that held
it out, with its own test-time augmentation, after resizing the tile by each factor of ``--scales`` (bilinear,
:func:`skimage.transform.rescale`); the probabilities are resized back to the tile and go through that fold's
watershed, and the mean over all factors is scored too. No network is trained; the test tiles are not read. A factor
chosen here is chosen on the scored tiles, so this is a diagnosis, not a choice.

    python benchmarks/monuseg_cv_scale.py runs/monuseg-cv/focal2 --scales 0.8,1,1.25

Needs ``BREASTDX_DATA``. Prints, per tile and as means: Dice and AJI at each factor and for the mean over factors,
and the median predicted nucleus area (pixels of the tile) at factor 1 beside the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from _tables import print_tile_table

from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
from breastdx.evaluation.instances import instance_scores
from breastdx.inference.nuclei import NucleusPredictor


def probabilities_at(predictor: NucleusPredictor, image: np.ndarray, factor: float) -> np.ndarray:
    """The predictor's probabilities ``(K, H, W)`` of ``image`` resized by ``factor``, resized back to ``(H, W)``."""
    from skimage.transform import rescale, resize

    if factor == 1:
        return predictor.probabilities(image)
    small = rescale(image, factor, order=1, channel_axis=-1, preserve_range=True, anti_aliasing=factor < 1)
    prob = predictor.probabilities(np.clip(small, 0, 255).round().astype(np.uint8))
    return resize(prob, (prob.shape[0], *image.shape[:2]), order=1, preserve_range=True).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a --cv-folds run folder")
    ap.add_argument("--scales", default="0.8,1,1.25", help="resize factors, comma-separated")
    args = ap.parse_args()
    factors = [float(v) for v in args.scales.split(",")]
    cases = {c.name: c for c in scan_monuseg(find_monuseg_root(Path(os.environ["BREASTDX_DATA"])))}
    keys = [f"{k} x{f:g}" for f in factors for k in ("dice", "aji")] + ["dice mean", "aji mean", "area", "ref area"]
    rows: dict[str, list[float]] = {}
    for fold in sorted((args.run / "folds").glob("f*")):
        predictor = NucleusPredictor.from_dir(fold / "model")
        for name in json.loads((fold / "split.json").read_text())["test"]:
            image, reference = load_case(cases[name])
            probs = {f: probabilities_at(predictor, image, f) for f in factors}
            row = []
            for f in factors:
                s = instance_scores(predictor.postprocessing.apply(probs[f]), reference)
                row += [s["dice"], s["aji"]]
            s = instance_scores(predictor.postprocessing.apply(np.mean(list(probs.values()), axis=0)), reference)
            labels = predictor.postprocessing.apply(probs[1.0] if 1.0 in probs else probabilities_at(predictor, image, 1))
            row += [s["dice"], s["aji"], float(np.median(np.bincount(labels.ravel())[1:])),
                    float(np.median(np.bincount(reference.ravel())[1:][np.bincount(reference.ravel())[1:] > 0]))]
            rows[name] = row
            print(name, " ".join(f"{v:.3f}" for v in row), flush=True)
    print_tile_table(rows, keys, width=11)


if __name__ == "__main__":
    main()
