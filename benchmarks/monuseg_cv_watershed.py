"""Does a wider watershed grid help on unseen sites? Leave-site-out check of the monuseg post-processing choice.

For each fold model of a ``breastdx train monuseg --cv-folds K`` run, the watershed thresholds are chosen again on
the held-out rows of that fold's training tiles, as training does (:func:`breastdx.training.nuclei
.choose_postprocessing`, the fold's own test-time augmentation kept), once with the shipped grid and once with a
wider one; each choice is then scored on the fold's held-out tiles, whole (never read by the choice). No network is
trained. It also prints, for exploration only, the single setting of best out-of-fold AJI: a choice made on the
scored tiles themselves, so optimistic.

    python benchmarks/monuseg_cv_watershed.py runs/monuseg-cv/macenko-e100 [--seeds 0.5,0.6,0.7,0.8,0.85,0.9,0.95]

Needs ``BREASTDX_DATA``. Prints mean out-of-fold Dice and AJI per grid and per tile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
from breastdx.evaluation.instances import aji, instance_scores
from breastdx.inference.nuclei import InstancePostprocessing, NucleusPredictor
from breastdx.tasks.monuseg import POSTPROCESSING_GRID, validation_start
from breastdx.training.nuclei import choose_postprocessing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a --cv-folds run folder (folds/f*/model)")
    ap.add_argument("--seeds", default="0.5,0.6,0.7,0.8,0.85,0.9,0.95", help="seed thresholds of the wider grid")
    a = ap.parse_args()
    wide = tuple((s, f, m) for s in map(float, a.seeds.split(",")) for f in (0.4, 0.5, 0.6) for m in (8, 20, 40))
    cases = {c.name: c for c in scan_monuseg(find_monuseg_root(Path(os.environ["BREASTDX_DATA"])))}
    per_tile: dict[str, dict[str, float]] = {}
    oof: list[tuple[np.ndarray, np.ndarray, InstancePostprocessing]] = []  # probabilities, reference, fold's post
    for fold in sorted((a.run / "folds").glob("f*")):
        predictor = NucleusPredictor.from_dir(fold / "model")
        split = json.loads((fold / "model" / "split.json").read_text())
        stop = validation_start(split)
        train = [load_case(cases[n]) for n in split["train"]]
        choices = {}
        for name, grid in (("shipped grid", POSTPROCESSING_GRID), ("wider grid", wide)):
            record, _ = choose_postprocessing(predictor, [t[0] for t in train], [t[1] for t in train], stop, grid)
            choices[name] = InstancePostprocessing(**record)
            print(f"{fold.name} {name}: {record} (tta {predictor.tta})")
        for n in split["test"]:
            image, ref = load_case(cases[n])
            prob = predictor.probabilities(image)
            oof.append((prob, ref, predictor.postprocessing))
            row = {}
            for name, post in choices.items():
                s = instance_scores(post.apply(prob), ref)
                row[f"{name} dice"], row[f"{name} aji"] = s["dice"], s["aji"]
            per_tile[n] = row
    keys = list(next(iter(per_tile.values())))
    print(f"{'tile':28s}" + "".join(f"{k:>18s}" for k in keys))
    for n, row in per_tile.items():
        print(f"{n:28s}" + "".join(f"{row[k]:18.3f}" for k in keys))
    print(f"{'mean':28s}" + "".join(f"{np.mean([r[k] for r in per_tile.values()]):18.3f}" for k in keys))
    oof_aji = {(s, f, m): np.mean([aji(dataclasses.replace(post, seed_threshold=s, foreground_threshold=f,
                                                           min_seed=m).apply(q), r) for q, r, post in oof])
               for s, f, m in wide}
    best = max(oof_aji, key=oof_aji.get)
    print(f"exploration only (chosen on the scored tiles, optimistic): best single setting {best}, "
          f"AJI {oof_aji[best]:.3f}")


if __name__ == "__main__":
    main()
