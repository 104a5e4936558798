"""Cross-validate busi-seg's full recipe on a borrowed GPU, and score the fold models here on the real data.

The shipped busi-seg recipe (U-Net 256², 100 epochs, patience 40) was never cross-validated: five trainings of
27 min on 2 cores. On a GPU machine the five folds train side by side in minutes, but the machine is reached
through a 64 MiB working tree and BUSI is 109 MB. The training sees BUSI only at the network size, so the data that
travel are a **stand-in** holding exactly what the training caches: every image resized to 256 × 256 by
:func:`breastdx.data.transforms.resize_uint8` and the union of its masks by
:func:`breastdx.data.transforms.resize_mask` (names and class folders kept). Both functions return a 256² input
unchanged, so the cached training and validation arrays, hence the epoch choice, are those of the real data.
Only the stand-in's checksum differs, so its fold split files carry it.

What the GPU machine cannot do is the part at the original image size (the postprocessing chosen on validation,
Dice at the original size). ``rescore`` does it here, on the real data, for each returned fold model: the
postprocessing re-chosen on the fold's validation cases (the training's own rule,
``BusiSegTask._choose_postprocessing``), then its test fold scored (``_evaluate_cases``), in float32, after checking
that the fold model's own ``split.json`` holds the same cases (the folds are recomputed here). The pooled
out-of-fold figures are those ``breastdx train busi-seg --cv-folds 5`` would write (up to the GPU's arithmetic),
with intervals over images and over the near-duplicate groups (``metrics_by_group``: the ones to quote).
The base split's 152 test cases are in no fold and are not read.

Two recipes are cross-validated on the same folds: the shipped one (Dice + cross-entropy) and the same with the
focal loss in place of the cross-entropy (``--focal-gamma 2``, the change that gained monuseg's cross-validation
+0.023 AJI). **The rule, fixed before the run:** the focal recipe replaces the shipped one when its pooled
out-of-fold Dice (both rescored here, over the same lesion images) is higher by more than 0.01. Only then is its
refit on the shipped grouped split (trained in the same run) scored on the test split, once, and shipped.

The machine (this workplace's ``device`` tool: one H200, 16 cores, its own PyTorch, Lightning, scikit-learn, no
MONAI) receives the working tree, at most 64 MiB. The tracked files alone are about 62 MiB, nearly all of it the
zoo's weights, which training does not need: remove them from the working tree for the call and restore them after
(``git checkout``). The wheels it lacks travel in ``.whl/`` (ignored), the stand-in in ``.device/`` (ignored):
about 48 MB in all. ``benchmarks/gpu_busi_seg_cv_device.sh`` is the machine's half; it first runs a one-epoch smoke
training and stops with its log if that fails.

Usage::

    python benchmarks/gpu_busi_seg_cv.py prepare .device/busi-cv      # stand-in + fold split files (about 15 s)
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        -d .whl monai==1.6.1 ImageHash==4.3.2 PyWavelets==1.9.0 pydicom==3.0.2 pydantic==2.14.4 \
        pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typer==0.29.2 click==8.5.1 \
        rich==15.0.0 shellingham==1.5.4 lightning==2.6.6 lightning-utilities==0.15.3 torchmetrics==1.9.0 \
        typing_extensions==4.16.0                                        # (PyWavelets: manylinux_2_28 too)
    git ls-files 'src/breastdx/zoo/*.safetensors' 'docs/*.png' | xargs rm -f
    # device run, carry .device and .whl:  BUDGET=420 bash benchmarks/gpu_busi_seg_cv_device.sh
    git checkout -- src/breastdx/zoo docs
    python benchmarks/gpu_busi_seg_cv.py unpack FILES_AT runs/gpu-busi-cv   # its tars; float16 back to float32
    python benchmarks/gpu_busi_seg_cv.py rescore runs/gpu-busi-cv/dicece    # f<k>/model, on the real data
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BASE_SPLIT = ROOT / "src" / "breastdx" / "zoo" / "busi-seg" / "split.json"
SIZE = 256
K = 5


def _data_root() -> Path:
    return Path(os.environ.get("BREASTDX_DATA", ROOT.parent / "shared" / "data"))


def _folds(data_root: Path) -> tuple[list, dict[str, str]]:
    from breastdx.data.busi import find_busi_root, scan_busi
    from breastdx.data.splits import busi_split
    from breastdx.pipeline.seg_crossval import busi_fold_splits

    base = busi_split(data_root, BASE_SPLIT, reuse_only=True)  # checks the split against the real data's checksum
    labels = {c.name: c.label for c in scan_busi(find_busi_root(data_root))}
    return busi_fold_splits(base, labels, K, base.seed), labels


def prepare(out: Path) -> None:
    from breastdx.data.busi import busi_checksum, find_busi_root, load_case, scan_busi
    from breastdx.data.transforms import resize_mask, resize_uint8

    data_root = _data_root()
    cases = scan_busi(find_busi_root(data_root))
    standin = out / "data" / "busi"
    if standin.exists():
        raise SystemExit(f"{standin} exists: remove it first (nothing is overwritten)")
    for c in cases:
        image, mask = load_case(c, mode="gray")
        folder = standin / c.image.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(resize_uint8(image, SIZE)).save(folder / c.image.name, optimize=True)
        Image.fromarray(resize_mask(mask, SIZE).astype(np.uint8) * 255).save(folder / f"{c.name}_mask.png",
                                                                             optimize=True)
    standin_cases = scan_busi(standin)
    if [c.name for c in standin_cases] != [c.name for c in cases]:
        raise SystemExit("the stand-in's cases differ from the real data's")
    checksum = busi_checksum(standin_cases)
    from breastdx.data.splits import busi_split

    splits, _ = _folds(data_root)
    (out / "folds").mkdir(parents=True, exist_ok=True)
    # The shipped grouped split itself, for the refit of a recipe that cross-validation chooses.
    base = busi_split(data_root, BASE_SPLIT, reuse_only=True)
    dataclasses.replace(base, data_checksum=checksum).to_json(out / "folds" / "base.json")
    for f, split in enumerate(splits):
        dataclasses.replace(split, data_checksum=checksum).to_json(out / "folds" / f"f{f}.json")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({"cases": len(cases), "standin_checksum": checksum, "folds": len(splits),
                      "fold_sizes": [[len(s.train), len(s.val), len(s.test)] for s in splits],
                      "bytes": size}))


def unpack(files: Path, dest: Path) -> None:
    """Extract the machine's tars into ``dest`` and cast the float16 fold weights back to float32."""
    import tarfile

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    if dest.exists():
        raise SystemExit(f"{dest} exists: remove it first (nothing is overwritten)")
    dest.mkdir(parents=True)
    for tar in sorted(files.glob("*.tar")):
        with tarfile.open(tar) as fh:
            fh.extractall(dest, filter="data")
    for path in sorted(dest.glob("*/f*/model/model.safetensors")) + sorted(dest.glob("refit-*/model/model.safetensors")):
        with safe_open(path, "pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        save_file({k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}, path, metadata=meta)
    for name in ("summary.json", "env.txt", "gpu.csv"):
        if (files / name).is_file():
            shutil.copy(files / name, dest / name)
    print(json.dumps({"unpacked": sorted(str(p.parent.relative_to(dest)) for p in dest.glob("**/model"))}))


def rescore(returned: Path, n_boot: int, seed: int) -> None:
    from breastdx.data.busi import find_busi_root, scan_busi
    from breastdx.evaluation.segmentation import summarize_segmentation
    from breastdx.evaluation.tables import ci_text
    from breastdx.inference.predictor import Postprocessing, SegmentationPredictor
    from breastdx.pipeline.seg_crossval import group_intervals
    from breastdx.tasks.busi_seg import BusiSegConfig, BusiSegTask

    data_root = _data_root()
    splits, _ = _folds(data_root)
    by_name = {c.name: c for c in scan_busi(find_busi_root(data_root))}
    task = BusiSegTask()
    config = BusiSegConfig(n_bootstrap=n_boot, seed=seed)
    rows, per_fold = [], []
    for f, split in enumerate(splits):
        model = returned / f"f{f}" / "model"
        if not (model / "meta.json").is_file():
            print(f"fold {f}: no model at {model}", file=sys.stderr)
            continue
        trained_on = json.loads((model / "split.json").read_text()) if (model / "split.json").is_file() else \
            json.loads((returned / f"f{f}" / "split.json").read_text())
        if any(sorted(trained_on[p]) != sorted(getattr(split, p)) for p in ("train", "val", "test")):
            raise SystemExit(f"{model} was trained on other cases than fold {f} as computed here: not rescored.")
        val = [by_name[n] for n in split.val]
        test = [by_name[n] for n in split.test]
        predictor = SegmentationPredictor.from_dir(model, task=task.name, dtype="float32")
        choice, _ = task._choose_postprocessing(predictor, val, config)
        predictor.postprocessing = Postprocessing.from_meta(choice["postprocessing"])  # what predict reads
        ev = task._evaluate_cases(predictor, test, n_boot, seed)
        rows += [{**s, "fold": f} for s in ev["scores"]]
        training = predictor.meta.get("training", {})
        per_fold.append({"fold": f, "n_val": len(val), "n_test": len(test),
                         "val_dice": choice["metrics"]["dice"]["value"],
                         "test_dice": ev["metrics"]["dice"]["value"],
                         "test_normal_fp_share": ev["metrics"].get("normal_fp_share", {}).get("value"),
                         "postprocessing": choice["postprocessing"],
                         "device_postprocessing": predictor.meta.get("postprocessing"),
                         "best_epoch": training.get("best_epoch"), "epochs_run": training.get("epochs_run"),
                         "train_minutes": round(training.get("train_seconds", 0) / 60, 2)})
        print(json.dumps(per_fold[-1]), flush=True)
    if not rows:
        raise SystemExit(f"{returned}: no fold models")
    pooled = summarize_segmentation(rows, [r["label"] for r in rows], n_boot=n_boot, seed=seed)
    by_group = group_intervals(rows, json.loads(BASE_SPLIT.read_text())["groups"], n_boot=n_boot, seed=seed)
    summary = {k: {"mean": float(np.mean([p[k] for p in per_fold])),
                   "sd": float(np.std([p[k] for p in per_fold], ddof=1)) if len(per_fold) > 1 else float("nan")}
               for k in ("val_dice", "test_dice")}
    result = {"folds": [p["fold"] for p in per_fold], "n": len(rows), "pooled": pooled,
              "pooled_by_group": by_group, "per_fold": per_fold, "per_fold_summary": summary}
    (returned / "rescore.json").write_text(json.dumps(result, indent=2))
    for key, v in pooled.items():
        print(f"{key:>24}  {ci_text(v)}" + (f"; over {by_group[key]['n_groups']} near-duplicate groups "
                                             f"{ci_text(by_group[key])}" if key in by_group else ""))
    for key, s in summary.items():
        print(f"{key + ' per fold':>24}  {s['mean']:.3f} (sd {s['sd']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("files", type=Path)
    u.add_argument("dest", type=Path)
    r = sub.add_parser("rescore")
    r.add_argument("returned", type=Path)
    r.add_argument("--n-bootstrap", type=int, default=2000)
    r.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.verb == "prepare":
        prepare(args.out)
    elif args.verb == "unpack":
        unpack(args.files, args.dest)
    else:
        rescore(args.returned, args.n_bootstrap, args.seed)


if __name__ == "__main__":
    main()
