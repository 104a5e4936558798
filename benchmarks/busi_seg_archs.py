"""busi-seg architectures side by side: the figures of their training runs, and their networks' speed in one process.

Reads each run folder of ``breastdx train busi-seg --arch NAME`` (the same recipe and split file for every one)
and prints one JSON line per run, then a Markdown table:

* validation Dice (over benign + malignant images, at the original size, after the postprocessing chosen there:
  ``model/meta.json``'s ``validation_metrics``), test Dice and normal images with a false lesion, with their
  95% bootstrap intervals (``metrics.json``);
* parameters, training minutes, epochs and the best epoch, training images/s (training images x epochs /
  training seconds, validation included, as the run reports them; those runs may have shared the machine);
* the network's forward pass on a batch of ``--batch-size`` images at the model's size, images/s, float32
  (and bfloat16 where native), median of ``--repeat`` calls after two warm-up calls, every network timed in
  this process, interleaved (round-robin), so that the first run is the others' baseline;
* the paired difference of test Dice against the first run (per benign or malignant test image, from each run's
  ``test_per_image.csv``), with its 95% bootstrap interval over images;
* the machine: CPU model, vector extensions, torch's capability, threads.

Usage::

    python benchmarks/busi_seg_archs.py RUN_DIR [RUN_DIR ...] [--threads 1] [--batch-size 16] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _machine import _load_network, machine_line


def run_figures(run_dir: Path) -> dict:
    """The figures a training run wrote (``metrics.json``, ``model/meta.json``)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    meta = json.loads((run_dir / "model" / "meta.json").read_text())
    training = metrics["training"]
    test, val = metrics["metrics"], meta["validation_metrics"]
    return {
        "run": str(run_dir), "arch": meta["architecture"], "image_size": meta["preprocessing"]["image_size"],
        "n_parameters": meta["n_parameters"],
        "val_dice": val["dice"], "test_dice": test["dice"], "test_iou": test["iou"], "test_hd95": test["hd95"],
        "test_normal_fp_share": test["normal_fp_share"], "val_normal_fp_share": val["normal_fp_share"],
        "postprocessing": meta["postprocessing"],
        "train_minutes": round(training["train_seconds"] / 60, 1), "epochs": training["epochs_run"],
        "best_epoch": training["best_epoch"], "precision": training["precision"],
        "train_images_per_s": round(training["n_train"] * training["epochs_run"] / training["train_seconds"], 1),
    }


def paired_dice_difference(run_dir: Path, baseline: Path) -> dict:
    """Mean of (Dice of ``run_dir`` - Dice of ``baseline``) over the test images with a lesion, 95% bootstrap CI."""
    import csv

    from breastdx.evaluation.ci import mean_ci

    def dice(run: Path) -> dict[str, float]:
        with open(run / "test_per_image.csv", newline="") as f:
            return {r["case"]: float(r["dice"]) for r in csv.DictReader(f) if r["label"] != "normal"}

    a, b = dice(run_dir), dice(baseline)
    if set(a) != set(b):
        raise ValueError(f"{run_dir} and {baseline} were tested on different images: use the same split file.")
    return mean_ci([a[k] - b[k] for k in sorted(a)])


def time_networks(run_dirs: list[Path], batch_size: int, repeat: int) -> dict[str, dict[str, float]]:
    """Forward images/s of each run's network, float32 and (where native) bfloat16, timed round-robin."""
    import torch

    from breastdx.runtime import bf16_native

    nets = {}
    for run_dir in run_dirs:
        network, meta = _load_network(run_dir / "model")
        size = int(meta["preprocessing"]["image_size"])
        nets[str(run_dir)] = (network, torch.rand(batch_size, int(meta["in_channels"]), size, size))
    dtypes = ["float32"] + (["bfloat16"] if bf16_native("cpu") else [])
    times: dict[tuple[str, str], list[float]] = {(r, d): [] for r in nets for d in dtypes}
    with torch.inference_mode():
        for i in range(repeat + 2):
            for run, (network, x) in nets.items():
                for dtype in dtypes:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                        start = time.perf_counter()
                        network(x)
                        seconds = time.perf_counter() - start
                    if i >= 2:
                        times[run, dtype].append(seconds)
    return {run: {f"network_images_per_s_{d}": round(batch_size / statistics.median(times[run, d]), 1)
                  for d in dtypes} for run in nets}


def _ci(m: dict) -> str:
    return f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of breastdx train busi-seg")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    speed = time_networks(args.runs, args.batch_size, args.repeat)
    rows = [{**run_figures(r), **speed[str(r)], "test_dice_minus_first": paired_dice_difference(r, args.runs[0])}
            for r in args.runs]
    print(json.dumps(machine_line(threads=torch.get_num_threads(), batch_size=args.batch_size)))
    for row in rows:
        print(json.dumps(row))
    dtypes = [k for k in rows[0] if k.startswith("network_images_per_s_")]
    print(f"\n| network | parameters | validation Dice | test Dice | minus {rows[0]['arch']} (paired) | normal images "
          "with a false lesion | training | training images/s | network images/s ("
          + " / ".join(d.rsplit("_", 1)[1] for d in dtypes) + ") |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        diff = r["test_dice_minus_first"]
        paired = f"{diff['value']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if r is not rows[0] else ""
        print(f"| {r['arch']} | {r['n_parameters']:,} | {_ci(r['val_dice'])} | {_ci(r['test_dice'])} | {paired} | "
              f"{_ci(r['test_normal_fp_share'])} | {r['train_minutes']} min ({r['epochs']} epochs, best "
              f"{r['best_epoch']}) | {r['train_images_per_s']} | {' / '.join(str(r[d]) for d in dtypes)} |")


if __name__ == "__main__":
    main()
