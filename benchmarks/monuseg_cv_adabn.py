"""Would test-time batch-norm adaptation (AdaBN) help monuseg on slides of unseen sites? Scored out of fold.

AdaBN (Li et al. 2018, Pattern Recognition 80:109-117, doi:10.1016/j.patcog.2018.03.005) replaces the mean and
variance that each batch-norm layer learnt on the training slides by those of the slide at hand: the tile, stain
normalised as usual, is run through the network in four 512 x 512 corner crops (and their d8 transforms) with the
batch-norm layers collecting statistics, then predicted as usual. ``--mix A`` keeps a share A of the training
statistics (0: AdaBN proper).

For a ``breastdx train monuseg --cv-folds K`` run, each training tile is predicted by the fold model that held it out,
as shipped and adapted, through that fold's watershed; the tiles are scored whole. No network is trained; the test
tiles are not read.

    python benchmarks/monuseg_cv_adabn.py runs/monuseg-cv/focal2 --mix 0,0.5

Needs ``BREASTDX_DATA``. Prints, per tile and as means: Dice and AJI as shipped and adapted.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import numpy as np
from _tables import print_tile_table

from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
from breastdx.evaluation.instances import instance_scores
from breastdx.inference.nuclei import TTA_TRANSFORMS, NucleusPredictor, dihedral


def adapted(network, x: np.ndarray, mix: float, crop: int = 512):
    """A copy of ``network`` whose batch-norm statistics are ``mix`` x its own + (1 - mix) x those of ``x``.

    ``x``: the stain-normalised tile, float32 ``(1, 3, H, W)`` in [0, 1], H and W >= ``crop``.
    """
    import torch

    net = copy.deepcopy(network).eval()
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    source = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative mean of the batches' statistics
        m.train()
    h, w = x.shape[-2:]
    crops = [x[..., r:r + crop, c:c + crop] for r in (0, h - crop) for c in (0, w - crop)]
    with torch.inference_mode():
        for k in TTA_TRANSFORMS["d8"]:
            net(torch.from_numpy(np.ascontiguousarray(dihedral(np.concatenate(crops), k))))
    for m, (mean, var) in zip(norms, source):
        m.running_mean.mul_(1 - mix).add_(mix * mean)
        m.running_var.mul_(1 - mix).add_(mix * var)
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a --cv-folds run folder")
    ap.add_argument("--mix", default="0", help="shares of the training statistics kept, comma-separated")
    args = ap.parse_args()
    mixes = [float(v) for v in args.mix.split(",")]
    cases = {c.name: c for c in scan_monuseg(find_monuseg_root(Path(os.environ["BREASTDX_DATA"])))}
    keys = ["dice", "aji"] + [f"{k} mix {m:g}" for m in mixes for k in ("dice", "aji")]
    rows: dict[str, list[float]] = {}
    for fold in sorted((args.run / "folds").glob("f*")):
        shipped = NucleusPredictor.from_dir(fold / "model", backend="torch")
        network = shipped.network
        for name in json.loads((fold / "model" / "split.json").read_text())["test"]:
            image, reference = load_case(cases[name])
            s = instance_scores(shipped.predict(image)[0], reference)
            row = [s["dice"], s["aji"]]
            tile = shipped.normalizer(image) if shipped.normalizer is not None else image
            x = (tile.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
            for mix in mixes:
                p = NucleusPredictor(adapted(network, x, mix), shipped.meta, normalizer=shipped.normalizer,
                                     postprocessing=shipped.postprocessing, tta=shipped.tta)
                s = instance_scores(p.predict(image)[0], reference)
                row += [s["dice"], s["aji"]]
            rows[name] = row
            print(f"{name:28s}" + "".join(f"{v:9.3f}" for v in row), flush=True)
    print_tile_table(rows, keys)


if __name__ == "__main__":
    main()
