"""Would two monuseg networks do better than one? Their mean probabilities, scored out of fold.

For two ``breastdx train monuseg --cv-folds K`` runs on the same folds, each training tile is predicted by the fold
model of A and the fold model of B that held it out (each with its own test-time augmentation), and their
probabilities are averaged; the mean goes through A's watershed (chosen on A's held-out rows). The unseen tiles are
scored whole, beside A and B alone. No network is trained; the test tiles are not read. A fold that B has not finished
(no ``per_tile.csv``) is skipped; folds are matched by the tiles they held out, whatever their order, and the means are over the tiles both runs scored.

    python benchmarks/monuseg_cv_ensemble.py runs/monuseg-cv/macenko-e100 runs/monuseg-cv/macenko-bw3-e100

Needs ``BREASTDX_DATA``. Prints, per tile and as means: Dice and AJI of A, B and the two averaged.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from _tables import print_tile_table

from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
from breastdx.evaluation.instances import instance_scores
from breastdx.inference.nuclei import NucleusPredictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path, help="a --cv-folds run folder; its watershed is used for the mean")
    ap.add_argument("b", type=Path, help="another --cv-folds run folder on the same folds")
    args = ap.parse_args()
    held = [{tuple(sorted(_held_out(f))): f for f in sorted((run / "folds").glob("f*"))} for run in (args.a, args.b)]
    if set(held[0]) != set(held[1]):
        raise SystemExit(f"{args.a} and {args.b} were cut into different folds")
    cases = {c.name: c for c in scan_monuseg(find_monuseg_root(Path(os.environ["BREASTDX_DATA"])))}
    keys = ("A dice", "A aji", "B dice", "B aji", "mean dice", "mean aji")
    rows: dict[str, list[float]] = {}
    for tiles, fold in held[0].items():
        other = held[1][tiles]
        if not (other / "per_tile.csv").is_file():
            print(f"{other}: not finished, skipped")
            continue
        a = NucleusPredictor.from_dir(fold / "model")
        b = NucleusPredictor.from_dir(other / "model")
        for name in tiles:
            image, reference = load_case(cases[name])
            pa, pb = a.probabilities(image), b.probabilities(image)
            scores = [instance_scores(a.postprocessing.apply(pa), reference),
                      instance_scores(b.postprocessing.apply(pb), reference),
                      instance_scores(a.postprocessing.apply((pa + pb) / 2), reference)]
            rows[name] = [s[k] for s in scores for k in ("dice", "aji")]
    print_tile_table(rows, keys, width=11)


def _held_out(fold: Path) -> list[str]:
    """The tiles a fold held out (its ``split.json``, written before training: ``test``)."""
    return json.loads((fold / "split.json").read_text())["test"]


if __name__ == "__main__":
    main()
