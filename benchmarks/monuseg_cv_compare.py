"""Two monuseg recipes compared by leave-site-out cross-validation of the training tiles (issue 17).

Each argument is the folder of a ``breastdx train monuseg --cv-folds 3 ... --out RUN`` run (one TCGA tissue source
site held out per fold; :mod:`breastdx.pipeline.nuclei_crossval`). Both must have held out the same tiles in the same
folds. Printed: each training tile's Dice, AJI and PQ under both recipes, scored whole by the fold model that never
saw the tile or its site, then the means and the paired differences (B minus A), and the tiles B wins on.

**Rule, fixed before the runs finished**: recipe B replaces recipe A when its mean out-of-fold AJI (the target
score farther from its goal) is higher by more than ``--margin`` (0.01); a smaller gain is a tie and keeps A, the
simpler recipe. Six tiles from three sites are too few for an interval worth printing, so the per-tile wins are shown
instead. The test tiles were read by neither run.

Usage::

    python benchmarks/monuseg_cv_compare.py runs/monuseg-cv/none runs/monuseg-cv/macenko [--margin 0.01] \
        [--json runs/monuseg-cv/none-vs-macenko.json]

The ``--json`` file is what ``breastdx train monuseg --recipe-choice FILE`` keeps in the model folder.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

SCORES = ("dice", "aji", "pq")


def _read(run: Path) -> tuple[dict[str, dict[str, float]], list[list[str]]]:
    with open(run / "oof_per_tile.csv", newline="") as fh:
        rows = {r["tile"]: {s: float(r[s]) for s in SCORES} for r in csv.DictReader(fh)}
    folds = json.loads((run / "folds.json").read_text())["folds"]
    return rows, folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="cross-validation run folder of recipe A (the current one)")
    parser.add_argument("b", type=Path, help="cross-validation run folder of recipe B (the candidate)")
    parser.add_argument("--margin", type=float, default=0.01, help="mean AJI gain B needs over A")
    parser.add_argument("--json", type=Path, help="also write the comparison here (for train monuseg "
                                                  "--recipe-choice)")
    args = parser.parse_args()
    a, folds_a = _read(args.a)
    b, folds_b = _read(args.b)
    if folds_a != folds_b or set(a) != set(b):
        raise SystemExit(f"{args.a} and {args.b} held out different tiles: {folds_a} vs {folds_b}")
    tiles = sorted(a)
    print(f"{'tile':26s} " + " ".join(f"{s + ' A':>8s} {s + ' B':>8s}" for s in SCORES))
    for t in tiles:
        print(f"{t:26s} " + " ".join(f"{a[t][s]:8.3f} {b[t][s]:8.3f}" for s in SCORES))
    summary = {}
    for s in SCORES:
        mean_a = sum(a[t][s] for t in tiles) / len(tiles)
        mean_b = sum(b[t][s] for t in tiles) / len(tiles)
        wins = sum(b[t][s] > a[t][s] for t in tiles)
        summary[s] = {"mean_a": round(mean_a, 4), "mean_b": round(mean_b, 4), "b_minus_a": round(mean_b - mean_a, 4),
                      "b_wins": f"{wins} of {len(tiles)}"}
        print(f"{s:5s} mean A {mean_a:.3f}  B {mean_b:.3f}  B - A {mean_b - mean_a:+.3f}  B better on {wins} of "
              f"{len(tiles)} tiles")
    gain = summary["aji"]["b_minus_a"]
    choice = "B" if gain > args.margin else "A"
    record = {"a": str(args.a), "b": str(args.b), "n_tiles": len(tiles), "folds": folds_a, **summary,
              "rule": f"B if mean AJI gain > {args.margin}", "choice": choice}
    if args.json:  # written before printing, so that a closed pipe cannot lose it
        args.json.write_text(json.dumps(record, indent=1))
    print(json.dumps(record))
    print(f"Cross-validation favours {choice}: {args.b if choice == 'B' else args.a}")


if __name__ == "__main__":
    main()
