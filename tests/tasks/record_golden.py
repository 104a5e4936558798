"""Record the golden outputs of the shipped BUSI models, after shipping a new one.

The tests ``test_shipped_model_outputs_are_stable`` in ``test_busi_seg.py`` and ``test_busi_cls.py`` compare
the shipped models' outputs on three real BUSI images (one per class) with the values this script writes:

* ``busi_seg_golden.json``: ``{image: {"area_px": int, "mean_prob": float}}`` (lesion area at the original
  size after the model's postprocessing; mean P(lesion) over the network's output grid);
* ``busi_cls_golden.json``: ``{image: {"prob": [P(normal), P(benign), P(malignant)]}}``.

Run it only when a model is shipped on purpose: a changed value otherwise means the model, its preprocessing
or the predictor changed.

Usage::

    BREASTDX_DATA=../shared/data python tests/tasks/record_golden.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

IMAGES = ("benign/benign (1).png", "malignant/malignant (1).png", "normal/normal (1).png")
HERE = Path(__file__).resolve().parent


def main() -> int:
    from breastdx.data.images import read_image
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.inference.predictor import SegmentationPredictor
    from breastdx.zoo import shipped_models

    root = os.environ.get("BREASTDX_DATA")
    if not root or not (Path(root) / "busi").is_dir():
        print("set BREASTDX_DATA to a data root holding busi/ (e.g. ../shared/data)", file=sys.stderr)
        return 2
    busi = Path(root) / "busi"
    models = shipped_models()
    arrays = {name: read_image(busi / name, mode="gray").array for name in IMAGES}

    seg = SegmentationPredictor.from_dir(models["busi-seg"], task="busi-seg")
    golden_seg = {}
    for name, image in arrays.items():
        out = seg.predict([image])[0]
        golden_seg[name] = {"area_px": int(out.area_px), "mean_prob": round(float(out.prob.mean()), 6)}
    (HERE / "busi_seg_golden.json").write_text(json.dumps(golden_seg, indent=2) + "\n")

    cls = ClassificationPredictor.from_dir(models["busi-cls"], task="busi-cls")
    prob = cls.predict_proba(list(arrays.values()))
    golden_cls = {name: {"prob": [round(float(v), 6) for v in p]} for name, p in zip(arrays, prob)}
    (HERE / "busi_cls_golden.json").write_text(json.dumps(golden_cls, indent=2) + "\n")
    print(json.dumps({"busi-seg": golden_seg, "busi-cls": golden_cls}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
