"""Where does the structure check of the grey-ultrasound models put real images? Neighbour correlation, set by set.

For every image of each shared dataset (every 10th IDC and PCam patch, every 3rd BreakHis image) it computes
:func:`breastdx.inference.scope.neighbour_correlation` on the image as read in grey, and prints the minimum, the 1st
and 5th percentiles and the median per set, then the same for uniform random noise at three sizes, and how many of
each set :data:`~breastdx.inference.scope.MIN_NEIGHBOUR_CORRELATION` flags. The threshold was set from these figures
(ultrasound: BUSI, BrEaST, BUS-UCLM, BreastMNIST); H&E sets are shown to say why colour models are not checked.

It prints JSON lines (the machine first). Takes about 10 s.

Usage::

    python benchmarks/scope_structure.py [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _machine import machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the data root (default: --data-dir's rule: $BREASTDX_DATA, else the cache folder)")
    args = parser.parse_args()
    import numpy as np

    from breastdx.config import resolve_data_root
    from breastdx.data.images import read_image
    from breastdx.inference.scope import MIN_NEIGHBOUR_CORRELATION, neighbour_correlation

    print(json.dumps(machine_line()), flush=True)
    root = resolve_data_root(args.data_root)
    sets = {
        "busi": [p for p in sorted((root / "busi").glob("*/*.png")) if "_mask" not in p.name],
        "breast_lesions_usg_sample": sorted((root / "breast_lesions_usg_sample" / "images").iterdir()),
        "bus_uclm_sample": sorted((root / "bus_uclm_sample" / "images").iterdir()),
        "idc (every 10th)": sorted((root / "idc").rglob("*.png"))[::10],
        "breakhis_224 (every 3rd)": sorted((root / "breakhis_224").rglob("*.jpg"))[::3],
        "pcam_subset (every 10th)": sorted((root / "pcam_subset").rglob("*.jpg"))[::10],
        "monuseg_breast": sorted((root / "monuseg_breast").glob("*/images/*.tif")),
    }
    values = {name: [neighbour_correlation(read_image(p, mode="gray").array) for p in files]
              for name, files in sets.items()}
    d = np.load(root / "breastmnist" / "breastmnist.npz")
    thumbs = np.concatenate([d[f"{s}_images"] for s in ("train", "val", "test")])
    values["breastmnist (28 x 28)"] = [neighbour_correlation(x) for x in thumbs]
    rng = np.random.default_rng(0)
    for h, w in ((300, 400), (28, 28), (50, 50)):
        values[f"uniform noise {h} x {w} (10 draws)"] = [
            neighbour_correlation(rng.integers(0, 256, (h, w), dtype=np.uint8)) for _ in range(10)]
    for name, v in values.items():
        r = np.array([x for x in v if x is not None])
        print(json.dumps({"set": name, "n": len(v), "not_measured": len(v) - len(r),
                          "min": round(float(r.min()), 3), "p1": round(float(np.percentile(r, 1)), 3),
                          "p5": round(float(np.percentile(r, 5)), 3), "median": round(float(np.median(r)), 3),
                          "flagged_below": MIN_NEIGHBOUR_CORRELATION,
                          "flagged": int((r < MIN_NEIGHBOUR_CORRELATION).sum())}), flush=True)


if __name__ == "__main__":
    main()
