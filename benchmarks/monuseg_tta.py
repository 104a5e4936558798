"""Test-time augmentation for nucleus segmentation (issue 17): chosen on the held-out rows, then read on the test tiles.

For a ``monuseg`` model folder (default: the shipped one) and each test-time augmentation of
:data:`breastdx.inference.nuclei.TTA_TRANSFORMS` (``none``; ``flip``: 4 symmetries; ``d8``: all 8 symmetries of the
square, probabilities averaged), this script:

1. predicts the held-out rows of the 6 training tiles (the model's ``split.json``: ``training_rows``) and chooses the
   watershed thresholds by mean AJI over them, as training does
   (:func:`breastdx.training.nuclei.choose_postprocessing`);
2. reports that held-out AJI and the held-out foreground Dice at the chosen thresholds; **the choice between the
   augmentations is made here**, by held-out AJI (Dice breaks a tie within 0.002);
3. then scores the 2 test tiles with each setting (Dice, AJI, PQ), so the effect on the frozen-section test tiles is
   seen, but the test figures do not choose;
4. times the network part of one 1000 x 1000 tile for each setting, in this process, after one untimed call
   (the first call's one-off costs are not the setting's).

It prints JSON lines (the machine first) and, with ``--out``, writes them to a file.

Usage::

    BREASTDX_DATA=../shared/data python benchmarks/monuseg_tta.py [--model NAME_OR_DIR] [--threads 2] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _machine import machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="monuseg")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default="none,flip,d8")
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    import numpy as np
    import torch

    from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
    from breastdx.evaluation.instances import instance_scores
    from breastdx.inference.nuclei import InstancePostprocessing, NucleusPredictor
    from breastdx.evaluation.nuclei_report import SCORES
    from breastdx.tasks.monuseg import postprocessing_grid, validation_start
    from breastdx.training.nuclei import choose_postprocessing
    from breastdx.zoo import resolve_model

    torch.set_num_threads(args.threads)
    lines = [machine_line(threads=args.threads)]
    print(json.dumps(lines[0]), flush=True)
    model_dir = resolve_model(args.model, "monuseg")
    split = json.loads((Path(model_dir) / "split.json").read_text())
    stop = validation_start(split)
    root = find_monuseg_root(Path(os.environ.get("BREASTDX_DATA", "../shared/data")))
    cases = scan_monuseg(root)
    train = [load_case(c) for c in cases if c.part == "train"]
    test = [load_case(c) for c in cases if c.part == "test"]
    images, instances = [t[0] for t in train], [t[1] for t in train]
    rows = []
    for mode in args.modes.split(","):
        predictor = NucleusPredictor.from_dir(model_dir, tta=mode)
        choice, grid = choose_postprocessing(predictor, images, instances, stop,
                                             postprocessing_grid(predictor.meta))
        post = InstancePostprocessing(**choice)
        held = [instance_scores(post.apply(predictor.probabilities(im[stop:])), lab[stop:])
                for im, lab in zip(images, instances)]
        predictor = NucleusPredictor.from_dir(model_dir, tta=mode, postprocessing=post)
        predictor.probabilities(test[0][0])  # warm-up, not timed
        start = time.perf_counter()
        predictor.probabilities(test[0][0])
        network_s = time.perf_counter() - start
        tiles = [instance_scores(predictor.predict(image)[0], ref) for image, ref in test]
        row = {"tta": mode, "postprocessing": choice,
               "held_out": {k: round(float(np.mean([h[k] for h in held])), 4) for k in SCORES},
               "test": {k: round(float(np.mean([t[k] for t in tiles])), 4) for k in SCORES},
               "test_per_tile": {k: [round(float(t[k]), 4) for t in tiles] for k in ("dice", "aji")},
               "network_seconds_one_tile": round(network_s, 2)}
        rows.append(row)
        lines.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: (round(r["held_out"]["aji"], 3), r["held_out"]["dice"]))
    ties = [r["tta"] for r in rows if abs(r["held_out"]["aji"] - best["held_out"]["aji"]) < 0.002]
    if len(ties) > 1:
        best = max((r for r in rows if r["tta"] in ties), key=lambda r: r["held_out"]["dice"])
    verdict = {"chosen_by_held_out": best["tta"], "held_out_aji_ties_within_0.002": ties,
               "note": "chosen on the held-out rows of the training tiles; the test tiles do not choose"}
    lines.append(verdict)
    print(json.dumps(verdict), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(json.dumps(x) for x in lines) + "\n")


if __name__ == "__main__":
    main()
