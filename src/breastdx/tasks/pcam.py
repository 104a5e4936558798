"""PCam: tumour vs normal on PatchCamelyon 96 x 96 lymph-node patches, official split (a spec).

Benchmark: Veeling et al. (2018) report test AUROC 0.963 and accuracy 0.898 for a rotation-equivariant
P4M-DenseNet trained on all 262,144 training patches; the target here is AUROC >= 0.95 and accuracy >= 0.88 on
the 3,000 test patches of the JPEG subset, trained on its 4,000 training patches alone.

References:
    Veeling, B. S., Linmans, J., Winkens, J., Cohen, T. & Welling, M. (2018). Rotation equivariant CNNs for
    digital pathology. MICCAI, doi:10.1007/978-3-030-00934-2_24
"""

from __future__ import annotations

from typing import Any

from breastdx.data.image_sets import hed_augmentation, macenko_normalisation, patch_reader
from breastdx.pipeline.classification import PATCH_CHECK, Benchmark, ClassificationSpec, PatchConfig, register


def official_split(source: Any):
    """PCam's official split (train, valid -> val, test) as a split file with every patch id.

    Raises:
        DataError: If a patch id names none of the splits.
    """
    from breastdx.data.errors import DataError
    from breastdx.data.splits import SplitFile

    ids = list(source.ids)
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, item in enumerate(ids):  # ids of the PCam readers start with the split: "valid/1/..."
        key = item.split("/", 1)[0]
        if key not in parts:
            raise DataError(f"PCam patch id {item!r} names none of the splits train, valid, test.")
        parts[key].append(i)
    labels = source.labels
    counts = {s: {c: int((labels[idx] == k).sum()) for k, c in enumerate(source.class_names)}
              for s, idx in zip(("train", "val", "test"), parts.values())}
    n = max(1, len(ids))
    return SplitFile(path=None, data_checksum=source.checksum, seed=0,
                     ratios=tuple(len(v) / n for v in parts.values()),  # type: ignore[arg-type]
                     train=[ids[i] for i in parts["train"]], val=[ids[i] for i in parts["valid"]],
                     test=[ids[i] for i in parts["test"]], dataset="pcam",
                     summary={"n_items": len(ids), "class_names": list(source.class_names), "grouped_by": None,
                              "kind": "official PCam split (train, valid -> val, test)", "counts": counts,
                              "note": "PCam patches carry no patient ids in this layout; the official split "
                                      "separates slides (Veeling et al. 2018)."})


PCAM = register(ClassificationSpec(
    name="pcam",
    title="PCam histopathology patches: tumour vs normal (compact CNN vs ResNet-18)",
    config_cls=PatchConfig,
    read=patch_reader("pcam", official=official_split, about=(
        "- PatchCamelyon (Veeling et al. 2018, doi:10.1007/978-3-030-00934-2_24; CC0), from Camelyon16 lymph-node "
        "sections (metastases of breast cancer, not breast tissue). Label 1 = tumour in the centre 32 x 32 pixels of "
        "the 96 x 96 patch.\n- The JPEG subset holds the first 2,000 patches per class of train, the last 3,000 of "
        "valid and the first 3,000 of test; JPEG re-encoding makes pixels differ slightly from the HDF5 release.")),
    positive="tumour", item="patch", augmentation=hed_augmentation, normalisation=macenko_normalisation,
    check=PATCH_CHECK, label_region=32 / 96, explain_zoom=3,
    benchmark=Benchmark(
        targets={"auroc": 0.95, "accuracy": 0.88},
        published={"P4M-DenseNet (Veeling et al. 2018)": {"auroc": 0.963, "accuracy": 0.898},
                   "DenseNet baseline (Veeling et al. 2018)": {"auroc": 0.947, "accuracy": 0.876}},
        note="Published figures: trained on all 262,144 training patches, tested on the full test split (32,768 "
             "patches); these are on the subset's first 3,000 test patches, so the comparison is indicative."),
    card_limitations=(
        "Trained on 4,000 patches (1.5% of PCam's training split); lymph-node tissue from two Dutch centres "
        "(Camelyon16); no external validation.",
        "The label concerns the centre 32 x 32 pixels only; the model sees the whole patch.",
        "PCam holds pixel-identical duplicate patches within the tumour class (48 groups in this test subset); "
        "metrics without them are in the training run's metrics.json.",
        "Patches only: no whole-slide inference or aggregation.",
        "Research use only; not for diagnosis."),
))
