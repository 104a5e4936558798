"""What histogram equalisation of the input (``--intensity``) costs per image, against the resize alone.

For each network size, times ``Preprocessing.resize_image`` of real BUSI images (resize, then the equalisation the
setting names) with ``divide_255`` (the resize alone, the baseline), ``equalize_hist`` and ``clahe``, interleaved
in one process so that a shared machine's noise falls on all three alike, and prints the median milliseconds per
image and the extra cost over the baseline. Prints the CPU it ran on.

Usage::

    BREASTDX_DATA=../shared/data python benchmarks/us_intensity_cost.py [--sizes 128,160,256] [--images 40] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _machine import machine_line

from breastdx.data.busi import find_busi_root, load_case, scan_busi
from breastdx.data.transforms import INTENSITIES, Preprocessing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,160,256")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    root = find_busi_root(Path(os.environ.get("BREASTDX_DATA", "../shared/data")))
    cases = scan_busi(root)
    step = max(1, len(cases) // args.images)
    images = [load_case(c, mode="gray")[0] for c in cases[::step][:args.images]]
    print(machine_line())
    print(f"{len(images)} BUSI images (median size {int(np.median([i.shape[0] for i in images]))} x "
          f"{int(np.median([i.shape[1] for i in images]))}), median of {args.rounds} rounds, ms per image")
    print("| size | " + " | ".join(INTENSITIES) + " | extra: " + " / ".join(INTENSITIES[1:]) + " |")
    print("|---|" + "---|" * (len(INTENSITIES) + 1))
    for size in (int(s) for s in args.sizes.split(",")):
        preps = {name: Preprocessing(image_size=size, intensity=name) for name in INTENSITIES}
        times: dict[str, list[float]] = {name: [] for name in INTENSITIES}
        for prep in preps.values():  # warm-up: imports and first-call costs are not timed
            prep.resize_image(images[0])
        for _ in range(args.rounds):
            for name, prep in preps.items():  # interleaved: the machine's noise falls on all alike
                t = time.perf_counter()
                for image in images:
                    prep.resize_image(image)
                times[name].append((time.perf_counter() - t) * 1000 / len(images))
        med = {name: float(np.median(v)) for name, v in times.items()}
        extra = " / ".join(f"+{med[n] - med['divide_255']:.2f}" for n in INTENSITIES[1:])
        print(f"| {size} | " + " | ".join(f"{med[n]:.2f}" for n in INTENSITIES) + f" | {extra} |")


if __name__ == "__main__":
    main()
