"""Does ``predict monuseg`` notice a tile at another magnification? The nuclei it segments, tile by tile and scale by
scale.

Each of the 8 MoNuSeg breast tiles (40x, 0.25 µm/px) is segmented by a ``monuseg`` model folder (default: the shipped
one) as it is, halved in size (bicubic; as at 20x) and doubled (its top-left 1000 x 1000 after doubling; as at 80x).
For each it prints the number of nuclei and their median area in pixels, and whether
:func:`breastdx.inference.nuclei_writer.magnification_note` flags it (median under
:data:`~breastdx.inference.nuclei_writer.SMALLEST_MEDIAN_NUCLEUS_PX` px). The threshold was set from these figures;
the tiles are the training and test tiles of the shipped model, so this shows what the check separates here, not
how it does on other slides.

It prints JSON lines (the machine first).

Usage::

    BREASTDX_DATA=../shared/data python benchmarks/monuseg_magnification.py [--model NAME_OR_DIR] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os

from _machine import machine_line

SCALES = (0.5, 1.0, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="monuseg")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    from PIL import Image

    from breastdx.config import resolve_data_root
    from breastdx.data.monuseg import find_monuseg_root, scan_monuseg
    from breastdx.inference.nuclei import NucleusPredictor
    from breastdx.inference.nuclei_writer import SMALLEST_MEDIAN_NUCLEUS_PX, magnification_note
    from breastdx.zoo import resolve_model

    print(json.dumps(machine_line(threads=args.threads)), flush=True)
    predictor = NucleusPredictor.from_dir(resolve_model(args.model, "monuseg"))
    flagged = {s: 0 for s in SCALES}
    cases = scan_monuseg(find_monuseg_root(resolve_data_root(None)))
    for case in cases:
        with Image.open(case.image) as im:
            tile = im.convert("RGB")
        row = {"tile": case.name, "part": case.part}
        for scale in SCALES:
            side = round(tile.width * scale), round(tile.height * scale)
            image = np.asarray(tile if scale == 1 else tile.resize(side, Image.BICUBIC))[:1000, :1000]
            labels, _ = predictor.predict(image)
            counts = np.bincount(labels.ravel())[1:]
            counts = counts[counts > 0]
            note = magnification_note(labels)
            flagged[scale] += bool(note)
            row[f"x{scale:g}"] = {"nuclei": int(counts.size), "median_area_px": float(np.median(counts)),
                                  "flagged": bool(note)}
        print(json.dumps(row), flush=True)
    print(json.dumps({"threshold_px": SMALLEST_MEDIAN_NUCLEUS_PX,
                      "flagged": {f"x{s:g}": f"{n} of {len(cases)}" for s, n in flagged.items()}}), flush=True)


if __name__ == "__main__":
    main()
