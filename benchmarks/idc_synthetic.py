"""Does synthetic IDC data help? Quality of the idc-gan generator and the four-way training comparison.

Prints JSON lines and writes the report (``--report``, default ``docs/idc-synthetic``: ``README.md``,
``grid.png``, ``figures.json``):

* the machine (CPU model, flags, torch's capability, threads);
* the target check: the 64 IDC patches that ``breastdx synthesize idc --n 64 --label 1`` writes (seed 0), how many
  are distinct, and the exact mean absolute difference (0..255) of each to its nearest real IDC-data patch (all
  5,537 patches, all patients, 8 rotations / mirrorings);
* quality per class (:func:`breastdx.pipeline.synthesis.measure_quality`): memorisation (nearest training patch,
  synthetic vs held-out real), KID and precision / recall against the held-out (test) patients **in the feature
  space of the shipped idc classifier, not Inception**, with real training patches as the yardstick;
* the comparison (:func:`breastdx.pipeline.synthesis.compare_training`) of the classifiers trained four ways on the
  same patient split (``--runs name=RUN_DIR ...``, each a ``breastdx train idc`` run folder): balanced accuracy and
  IDC recall at argmax and at the validation threshold, AUROC, each model minus the baseline with 95% intervals
  from resampling the test patients.

Usage::

    python benchmarks/idc_synthetic.py --runs as_is=runs/idc-aug/none class_weighting=runs/idc-aug/weighted_loss \\
        oversampling=runs/idc-aug/sampler synthetic=runs/idc-aug/synthetic [--generator idc-gan] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from _machine import machine_line

ROOT = Path(__file__).resolve().parents[1]


def _fmt(d: dict, digits: int = 3) -> str:
    return f"{d['value']:+.{digits}f} [{d['ci95'][0]:+.{digits}f}, {d['ci95'][1]:+.{digits}f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("BREASTDX_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--generator", default="idc-gan")
    ap.add_argument("--runs", nargs="*", default=[], help="name=RUN_DIR; the first is the baseline")
    ap.add_argument("--report", default=str(ROOT / "docs" / "idc-synthetic"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from breastdx.models.gan import generate, load_generator
    from breastdx.pipeline.synthesis import (_grid, compare_training, measure_quality, near_copy_check,
                                             read_idc_patches, resolve_generator)
    from breastdx.visualize.png import png_bytes
    from breastdx.zoo import shipped_models

    print(json.dumps(machine_line(threads=args.threads)))
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    figures: dict = {"generator": args.generator}
    start = time.perf_counter()
    parts = read_idc_patches(args.data)
    folder = resolve_generator(args.generator)
    generator, meta = load_generator(folder)

    t = time.perf_counter()
    target = generate(generator, 64, 1, seed=0)  # what `breastdx synthesize idc --n 64 --label 1` writes
    every_real = np.concatenate([parts[s]["images"] for s in ("train", "val", "test")])
    check = near_copy_check(target, every_real)
    check["seconds"] = round(time.perf_counter() - t, 1)
    figures["target"] = check
    print(json.dumps({"target": {k: v for k, v in check.items() if k != "distance"}}))

    t = time.perf_counter()
    quality = measure_quality(folder, parts, shipped_models()["idc"])
    quality["seconds"] = round(time.perf_counter() - t, 1)
    figures["quality"] = quality
    print(json.dumps({"quality": quality}))

    rows = []
    for c, name in enumerate(("normal", "tumour")):
        real = parts["test"]["images"][parts["test"]["labels"] == c]
        pick = real[np.linspace(0, len(real) - 1, 16).round().astype(int)]
        rows += [_grid(generate(generator, 16, c, seed=0), 2, 8), _grid(pick, 2, 8)]
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([x for r in rows for x in (r, gap)][:-1])
    (report / "grid.png").write_bytes(png_bytes(np.kron(grid, np.ones((2, 2, 1), np.uint8))))
    # the first 8 IDC patches of the target check above their nearest real patches (all patients, any symmetry)
    from breastdx.evaluation.generative import dihedral_views, nearest_patch_distance

    near = nearest_patch_distance(target[:8], every_real)
    views = dihedral_views(every_real[near["index"]])  # the reference turned as the query was compared
    inverse = {0: 0, 1: 3, 2: 2, 3: 1, 4: 4, 5: 5, 6: 6, 7: 7}  # undo the query's view on the reference
    matched = np.stack([views[inverse[int(v)], i] for i, v in enumerate(near["view"])])
    pairs_img = np.concatenate([_grid(target[:8], 1, 8), gap, _grid(matched, 1, 8)])
    (report / "nearest.png").write_bytes(png_bytes(np.kron(pairs_img, np.ones((3, 3, 1), np.uint8))))
    figures["nearest_examples"] = [round(float(x), 2) for x in near["distance"]]

    if args.runs:
        runs = dict(item.split("=", 1) for item in args.runs)
        baseline = next(iter(runs))
        pairs = [("synthetic", other) for other in ("class_weighting", "oversampling")
                 if "synthetic" in runs and other in runs]
        comparison = compare_training({n: Path(d) / "model" for n, d in runs.items()}, parts["test"], baseline,
                                      n_boot=args.n_boot, pairs=pairs)
        for n, d in runs.items():
            m = json.loads((Path(d) / "metrics.json").read_text())
            comparison["models"][n]["train_minutes"] = round(m["timing"]["train_seconds"]["compact_cnn"] / 60, 1)
            comparison["models"][n]["val_score"] = m["models"]["compact_cnn"]["val_score"]
            comparison["models"][n]["run"] = str(d)
        figures["comparison"] = comparison
        print(json.dumps({"comparison": comparison}))
    figures["seconds"] = round(time.perf_counter() - start, 1)
    figures["machine"] = machine_line(threads=args.threads)["machine"]
    (report / "figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps({"report": str(report), "seconds": figures["seconds"]}), file=sys.stderr)


if __name__ == "__main__":
    main()
