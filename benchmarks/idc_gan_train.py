"""Train the idc-gan generator (the shipped ``src/breastdx/zoo/idc-gan`` was made so) and print its figures.

Trains :func:`breastdx.pipeline.synthesis.train_idc_gan` on the training patients of the shipped idc model's split,
writes the run folder (``OUT/model`` is the generator folder; ``OUT/samples_<step>.png`` grids of both classes at
each snapshot; ``OUT/training.json`` the settings and loss history), and prints JSON lines: the machine, then
steps, seconds and the last losses. Measure the result with ``benchmarks/idc_synthetic.py --generator OUT/model``.

Usage::

    python benchmarks/idc_gan_train.py --out runs/idc-gan/r1 --steps 4000 --minutes 45 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from _machine import machine_line

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("BREASTDX_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--minutes", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--snapshot-every", type=int, default=500)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from breastdx.pipeline.synthesis import train_idc_gan
    from breastdx.training.gan import GanSettings

    print(json.dumps(machine_line(threads=args.threads)))
    settings = GanSettings(steps=args.steps, max_minutes=args.minutes, seed=args.seed)
    model_dir = train_idc_gan(args.data, args.out, settings, snapshot_every=args.snapshot_every)
    info = json.loads((Path(args.out) / "training.json").read_text())
    print(json.dumps({"model": str(model_dir), "steps_run": info["steps_run"], "train_seconds": info["train_seconds"],
                      "last": info["history"][-1]}))


if __name__ == "__main__":
    main()
