"""Which inputs each shipped image classifier flags as out of scope, on every dataset of the data root.

For each shipped classifier (busi-cls, breastmnist, idc, pcam, breakhis) and each dataset, up to ``--limit``
images spread evenly over the dataset are predicted as ``breastdx predict`` does (without Grad-CAM), and two
shares are printed, one JSON line per model and dataset:

* ``feature``: flagged by the feature-space score alone (:mod:`breastdx.inference.ood`: distance to the k-th
  nearest training image over the 99th percentile of the validation images');
* ``out_of_scope``: flagged by any check (:func:`breastdx.inference.scope.check_scope`: colour, size, features).

The model's own dataset is read through its test split (images it never trained on); the other datasets as
folders (BreastMNIST: its test split in the ``.npz``). External ultrasound (BUS-UCLM, BrEaST) is expected in
scope for the ultrasound models; H&E in scope for the H&E models.

Usage::

    BREASTDX_DATA=../shared/data python benchmarks/ood_scope.py [--models busi-cls,idc] [--limit 200]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

DATASETS = {"busi": "busi", "busi_original_sample": "busi_original_sample",
            "bus_uclm_sample": "bus_uclm_sample/images", "breast_lesions_usg_sample": "breast_lesions_usg_sample/images",
            "breastmnist": "breastmnist/breastmnist.npz#test", "idc": "idc", "pcam": "pcam_subset/test",
            "breakhis": "breakhis_224", "monuseg": "monuseg_breast/test/images"}
OWN = {"busi-cls": "busi", "breastmnist": "breastmnist", "breastmnist-single": "breastmnist", "idc": "idc",
       "pcam": "pcam", "breakhis": "breakhis"}


def own_test_images(name: str, predictor, model_dir: Path, root: Path) -> list[np.ndarray]:
    """The model's own test split, read as in ``evaluate``."""
    from breastdx.pipeline.verbs import _split_data
    from breastdx.tasks import get_task

    data, _ = _split_data(get_task(predictor.meta["task"]), predictor, model_dir, root, Path(tempfile.mkdtemp()), {}, "")
    part = data.parts["test"]
    return [part.read(i)[0] for i in range(len(part))]


def folder_images(spec: str, root: Path, mode: str, limit: int) -> list:
    """Up to ``limit`` images of a folder (or an ``.npz#split``), spread evenly: records (colour as stored) or
    arrays."""
    from breastdx.data.images import read_image
    from breastdx.data.image_files import list_images
    from breastdx.data.array_images import expand_array_file, read_array_item

    if ".npz" in spec:
        paths = expand_array_file(root / spec)
    else:
        paths = list_images([root / spec])
    if limit and len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    if ".npz" in spec:
        return [read_array_item(p, mode)[0] for p in paths]
    return [read_image(p, mode=mode) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(OWN))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.scope import check_scope
    from breastdx.zoo import shipped_models

    root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    for name in args.models.split(","):
        model_dir = shipped_models()[name]
        predictor = ClassificationPredictor.from_dir(model_dir, backend="torch")
        mode = predictor.preprocessing.mode
        for dataset, spec in DATASETS.items():
            own = OWN[name] == dataset
            images = own_test_images(name, predictor, model_dir, root) if own else \
                folder_images(spec, root, mode, args.limit)
            records = [im if hasattr(im, "array") else _Record(im) for im in images]
            outs = predictor.predict([r.array for r in records])
            feature = sum(bool(o.ood_note) for o in outs)
            scoped = [check_scope(r, predictor, o) for r, o in zip(records, outs)]
            flagged = sum(not s.in_scope for s in scoped)
            print(json.dumps({"model": name, "dataset": dataset + (" (test split)" if own else ""), "n": len(images),
                              "feature": round(feature / len(images), 3), "out_of_scope": round(flagged / len(images), 3),
                              "threshold": predictor.ood.threshold if predictor.ood else None}), flush=True)


class _Record:
    """The fields of :class:`breastdx.data.images.ImageRecord` that the scope check reads, for a decoded array."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.full_shape = array, array.shape[:2], None
        a = array.astype(np.float32)
        self.colourfulness = float((a.max(-1) - a.min(-1)).mean() / 255) if a.ndim == 3 else 0.0


if __name__ == "__main__":
    main()
