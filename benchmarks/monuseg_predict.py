"""Time of ``breastdx predict monuseg`` on 1000 x 1000 H&E tiles, end to end, and where the time goes.

Runs the command line in a fresh process (``python -m breastdx.cli predict monuseg TILES``) with the shipped model
(or ``--model``) on the MoNuSeg breast test tiles, writing instance masks, overlays, per-nucleus CSVs and the per-tile
features into a temporary folder, and prints JSON lines:

* the machine (CPU model, flags, torch's capability, threads);
* per tile, the seconds the command reports (read, sliding-window network, watershed, morphometry, writing), and the
  child's wall-clock time from interpreter start to exit (imports and model loading included);
* in this process, with the same threads, one tile split into its stages, and the baseline of the same run: the
  PyTorch network called once on the whole tile (padded to a multiple of 16), without windows and without
  test-time augmentation; the windows figure uses the model's own augmentation and backend, both printed (``tta``,
  ``backend``): with ``tta`` other than ``none`` the two are not like for like.

The issue's target: a 1000 x 1000 tile in under 5 s end to end on 2 CPU cores.

Usage::

    python benchmarks/monuseg_predict.py [--data DATA] [--model NAME_OR_DIR] [--threads 2] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _child import read_rows, run_cli, scratch_folder
from _machine import machine_line


def stages(model_dir: Path, tile: Path, threads: int, repeat: int) -> dict:
    import numpy as np
    import torch

    from breastdx.data.monuseg import read_rgb
    from breastdx.data.nucleus_patches import to_tensor
    from breastdx.inference.nuclei import NucleusPredictor
    from breastdx.morphometry.features import grey_levels
    from breastdx.morphometry.summary import measure_nuclei

    torch.set_num_threads(threads)
    predictor = NucleusPredictor.from_dir(model_dir)
    image = read_rgb(tile)
    predictor.probabilities(image)  # warm-up
    best: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        return out

    for _ in range(repeat):
        timed("read_s", lambda: read_rgb(tile))
        prob = timed("windows_network_s", lambda: predictor.probabilities(image))
        labels = timed("watershed_s", lambda: predictor.postprocessing.apply(prob))
        timed("morphometry_s", lambda: measure_nuclei(labels, grey_levels(image)))
        h, w = image.shape[:2]
        pad = ((0, -h % 16), (0, -w % 16), (0, 0))
        x = to_tensor(np.pad(image, pad, mode="reflect"))[None]
        with torch.inference_mode():
            timed("baseline_whole_tile_network_s", lambda: predictor.network(x))
    return {"tile": tile.name, "size": f"{image.shape[1]}x{image.shape[0]}", "nuclei": int(labels.max()),
            "windows": f"{predictor.windows.roi_size} px, overlap {predictor.windows.overlap}",
            "tta": predictor.tta, "backend": getattr(predictor.runner, "backend", "torch"),
            **{k: round(v, 3) for k, v in best.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    parser.add_argument("--data", type=Path, default=default_root / "monuseg_breast" / "test" / "images")
    parser.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the output folders")
    args = parser.parse_args()
    tiles = sorted(args.data.glob("*.tif"))
    if not tiles:
        sys.exit(f"{args.data}: no .tif tiles; pass --data or set BREASTDX_DATA.")
    from breastdx.zoo import resolve_model

    model_dir = Path(resolve_model(args.model, "monuseg"))
    print(json.dumps(machine_line(threads_option=args.threads)))
    with scratch_folder("monuseg_predict_", args.keep) as tmp:
        for r in range(args.repeat):
            run = run_cli(["predict", "monuseg", *map(str, tiles), "--model", str(model_dir), "--out",
                           str(tmp / f"run{r}"), "--threads", str(args.threads)])
            rows = read_rows(tmp / f"run{r}" / "predictions.csv") if run.proc.returncode == 0 else []
            print(json.dumps({"run": r, "exit_code": run.proc.returncode, "tiles": len(rows),
                              "seconds_per_tile_reported": [float(x["seconds"]) for x in rows],
                              "child_wall_s": round(run.wall_s, 2), "child_cpu_s": round(run.cpu_s, 1),
                              "peak_rss_mib": round(run.peak_rss_mib, 1), "stderr_tail": run.stderr_tail}))
    print(json.dumps({"stages_best_of": args.repeat, **stages(model_dir, tiles[0], args.threads, args.repeat)}))


if __name__ == "__main__":
    main()
