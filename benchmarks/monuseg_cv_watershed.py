"""Does a wider post-processing grid help on unseen sites? Leave-site-out check of the monuseg watershed choice.

For each fold model of a ``breastdx train monuseg --cv-folds K`` run, the watershed thresholds are chosen again on
the held-out rows of that fold's training tiles, as training does (:func:`breastdx.training.nuclei
.choose_postprocessing`, the fold's own test-time augmentation kept), once with the shipped grid and once with a
wider one; each choice is then scored on the fold's held-out tiles, whole (never read by the choice). No network is
trained. The wider grid crosses the seed thresholds of ``--seeds`` with the shipped foreground thresholds and
smallest markers, and with the instance filters of :class:`breastdx.inference.nuclei.InstancePostprocessing`:
smallest instance (``--min-sizes``), foreground regions without a marker kept or dropped (``--unseeded``) and
smallest mean foreground probability (``--min-mean-foreground``), and markers split at the necks of their distance
transform (``--seed-splits``, pixels). With ``--explore`` it also prints, for exploration only, the single
setting of best out-of-fold AJI: a choice made on the scored tiles themselves, so optimistic (every setting of the
wider grid applied to every tile: minutes with the larger grids).

    python benchmarks/monuseg_cv_watershed.py runs/monuseg-cv/macenko-e100 [--seeds 0.5,0.6,0.7,0.8,0.85,0.9,0.95]
    python benchmarks/monuseg_cv_watershed.py runs/monuseg-cv/macenko-e100 --seeds 0.5,0.6,0.7,0.8 \
        --min-sizes 20,60 --unseeded keep,drop --min-mean-foreground 0,0.7 --seed-splits 0,1,2

Needs ``BREASTDX_DATA``. Prints mean out-of-fold Dice, AJI and PQ per grid and per tile, and the settings chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from _tables import print_tile_table

from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
from breastdx.evaluation.instances import aji, instance_scores
from breastdx.inference.nuclei import InstancePostprocessing, NucleusPredictor
from breastdx.tasks.monuseg import postprocessing_grid, validation_start
from breastdx.training.nuclei import choose_from_probabilities


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a --cv-folds run folder (folds/f*/model)")
    ap.add_argument("--seeds", default="0.5,0.6,0.7,0.8,0.85,0.9,0.95", help="seed thresholds of the wider grid")
    ap.add_argument("--min-sizes", default="20", help="smallest instances, pixels, of the wider grid")
    ap.add_argument("--unseeded", default="keep", help="keep and / or drop the foreground regions without a marker")
    ap.add_argument("--min-mean-foreground", default="0", help="smallest mean foreground probabilities")
    ap.add_argument("--seed-splits", default="0", help="depths, pixels, at which markers are split")
    ap.add_argument("--explore", action="store_true",
                    help="also print the best single setting chosen on the scored tiles (optimistic; slow)")
    a = ap.parse_args()
    extras = [{"min_size": int(z), "unseeded": u, "min_mean_foreground": float(t), "seed_split": float(h)}
              for z in a.min_sizes.split(",") for u in a.unseeded.split(",")
              for t in a.min_mean_foreground.split(",") for h in a.seed_splits.split(",")]
    wide = tuple((s, f, m, e) for e in extras for s in map(float, a.seeds.split(",")) for f in (0.4, 0.5, 0.6)
                 for m in (8, 20, 40))
    cases = {c.name: c for c in scan_monuseg(find_monuseg_root(Path(os.environ["BREASTDX_DATA"])))}
    per_tile: dict[str, dict[str, float]] = {}
    oof: list[tuple[np.ndarray, np.ndarray, InstancePostprocessing]] = []  # probabilities, reference, fold's post
    for fold in sorted((a.run / "folds").glob("f*")):
        predictor = NucleusPredictor.from_dir(fold / "model")
        split = json.loads((fold / "model" / "split.json").read_text())
        stop = validation_start(split)
        train = [load_case(cases[n]) for n in split["train"]]
        rows_probs = [predictor.probabilities(t[0][stop:]) for t in train]
        choices = {}
        # the training's own candidates (with the distance grid for a model with a distance output), and more
        for name, grid in (("shipped grid", postprocessing_grid(predictor.meta)), ("wider grid", wide)):
            record, _ = choose_from_probabilities(predictor.postprocessing, rows_probs, [t[1][stop:] for t in train],
                                                  grid)
            choices[name] = InstancePostprocessing(**record)
            print(f"{fold.name} {name}: {record} (tta {predictor.tta})", flush=True)
        for n in split["test"]:
            image, ref = load_case(cases[n])
            prob = predictor.probabilities(image)
            oof.append((prob, ref, predictor.postprocessing))
            row = {}
            for name, post in choices.items():
                s = instance_scores(post.apply(prob), ref)
                row[f"{name} dice"], row[f"{name} aji"], row[f"{name} pq"] = s["dice"], s["aji"], s["pq"]
            per_tile[n] = row
    keys = list(next(iter(per_tile.values())))
    print_tile_table({n: [row[k] for k in keys] for n, row in per_tile.items()}, keys, width=18)
    if not a.explore:
        return
    oof_aji = {i: np.mean([aji(dataclasses.replace(post, seed_threshold=s, foreground_threshold=f, min_seed=m,
                                                   **e).apply(q), r) for q, r, post in oof])
               for i, (s, f, m, e) in enumerate(wide)}
    best = max(oof_aji, key=oof_aji.get)
    print(f"exploration only (chosen on the scored tiles, optimistic): best single setting {wide[best]}, "
          f"AJI {oof_aji[best]:.3f}")


if __name__ == "__main__":
    main()
