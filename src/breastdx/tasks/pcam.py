"""PCam: tumour vs normal on PatchCamelyon 96 x 96 lymph-node patches, official split (a spec).

By default the split is PCam's own: train, valid (model choice, temperature and threshold) and test. With
``--valid-to-train FRACTION`` that fraction of valid joins the training patches and the rest stays the
validation split; the test split stays official and untouched (:func:`official_split`). The held-back part of
valid is one contiguous block of PCam row indices per class (the highest rows), because neighbouring rows are
the most likely to come from one slide. Whether it is slide-disjoint from the moved part cannot be verified:
the slide (WSI) ids of ``camelyonpatch_level_2_split_valid_meta.csv`` are not in the data, so validation figures
of such a split may be optimistic.

Benchmark: Veeling et al. (2018) report test AUROC 0.963 and accuracy 0.898 for a rotation-equivariant
P4M-DenseNet trained on all 262,144 training patches; the target here is AUROC >= 0.95 and accuracy >= 0.88 on
the 3,000 test patches of the JPEG subset, trained on its 4,000 training patches (and, with
``--valid-to-train``, part of its 3,000 validation patches).

References:
    Veeling, B. S., Linmans, J., Winkens, J., Cohen, T. & Welling, M. (2018). Rotation equivariant CNNs for
    digital pathology. MICCAI, doi:10.1007/978-3-030-00934-2_24
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from breastdx.config import ConfigError, option
from breastdx.data.image_sets import hed_augmentation, macenko_normalisation, patch_reader
from breastdx.pipeline.classification import Benchmark, ClassificationSpec, register
from breastdx.pipeline.patch_config import PATCH_CHECK, PatchConfig


@dataclass(frozen=True)
class PCamConfig(PatchConfig):
    """Options of ``breastdx train pcam``: as :class:`~breastdx.pipeline.patch_config.PatchConfig`, and:

    Attributes:
        valid_to_train: Fraction of PCam's valid split moved into training (0: the official split); the rest, the
            highest row indices of each class as one block, stays the validation split. Slide-disjointness of
            the two parts cannot be verified (no slide ids in the data): validation figures may be optimistic.
        cv_folds: Not for pcam (0 only): cross-validation groups folds by patient, and PCam has an official split
            and no patient or slide ids (idc and breakhis cross-validate).
        cv_workers: Not for pcam (see ``cv_folds``).
    """

    valid_to_train: float = option(0.0, ge=0, lt=1)


def _check(config: Any) -> None:
    PATCH_CHECK(config)
    if config.cv_folds:  # refused before the run folder is made and the data are read
        raise ConfigError("The 'cv-folds' option is not for pcam: cross-validation is patient-grouped, and PCam has "
                          "an official split and no patient or slide ids. idc and breakhis cross-validate.")
    if config.valid_to_train and config.split_file:
        raise ConfigError("The 'valid-to-train' option of pcam makes a new split; it cannot be combined with "
                          f"'split-file' ({config.split_file!r}), which reuses one. Pass one of them.")


def _row(item: str) -> int:
    """PCam row index of a patch id (``"valid/1/patch0029612.jpg"`` or ``"valid/29612"`` -> 29612)."""
    from breastdx.data.errors import DataError

    found = re.search(r"(\d+)\D*$", item)
    if found is None:
        raise DataError(f"PCam patch id {item!r} holds no row index.")
    return int(found.group(1))


def official_split(source: Any, valid_to_train: float = 0.0):
    """PCam's official split (train, valid -> val, test) as a split file with every patch id, or with
    ``valid_to_train`` > 0 that fraction of valid moved into training.

    The validation patches kept are, per class, the ``round((1 - valid_to_train) * n)`` with the highest PCam row
    indices (one contiguous block of that class's rows); the others join train. The test split is always
    PCam's. The split file's summary records the fraction and each class's held-back row range.

    Args:
        source: A PCam :class:`~breastdx.data.patches.PatchSource` (ids start with the split name).
        valid_to_train: Fraction of valid moved into training, in ``[0, 1)``.

    Returns:
        A :class:`~breastdx.data.splits.SplitFile` (``path`` None).

    Raises:
        DataError: If a patch id names none of the splits or holds no row index, or if ``valid_to_train`` leaves
            a class without validation patches.
    """
    from breastdx.data.errors import DataError
    from breastdx.data.splits import SplitFile

    ids = list(source.ids)
    labels = source.labels
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, item in enumerate(ids):  # ids of the PCam readers start with the split: "valid/1/..."
        key = item.split("/", 1)[0]
        if key not in parts:
            raise DataError(f"PCam patch id {item!r} names none of the splits train, valid, test.")
        parts[key].append(i)
    train, val, held = list(parts["train"]), list(parts["valid"]), {}
    if valid_to_train > 0:
        val = []
        for k, name in enumerate(source.class_names):
            rows = sorted((_row(ids[i]), i) for i in parts["valid"] if labels[i] == k)
            keep = int(round((1 - valid_to_train) * len(rows)))
            cut = len(rows) - keep
            train += [i for _, i in rows[:cut]]
            val += [i for _, i in rows[cut:]]
            if not keep:
                raise DataError(f"--valid-to-train {valid_to_train:g} leaves no validation patch of class {name!r} "
                                f"({len(rows)} in valid); use a smaller fraction.")
            held[name] = [rows[cut][0], rows[-1][0]]
        train.sort()
        val.sort()
    chosen = {"train": train, "val": val, "test": parts["test"]}
    counts = {s: {c: int((labels[idx] == k).sum()) for k, c in enumerate(source.class_names)}
              for s, idx in chosen.items()}
    n = max(1, len(ids))
    if valid_to_train > 0:
        kind = (f"PCam split: official train + {valid_to_train:g} of valid -> train, the rest of valid -> val, "
                "official test")
        words = (f"PCam official test; train + {valid_to_train:g} of valid; val: the rest, a block of valid's highest "
                 "rows per class (slide-disjointness unverifiable: validation figures possibly optimistic)")
        note = ("PCam patches carry no slide ids in this layout. The official split separates slides (Veeling et al. "
                "2018); the test split is PCam's. The validation patches are, per class, a contiguous block of the "
                "highest PCam row indices of valid, the rows most likely to share a slide with each other rather "
                "than with the moved ones; without the slide ids (camelyonpatch_level_2_split_valid_meta.csv, "
                "column wsi) this cannot be verified, so validation figures (best epoch, temperature, threshold) "
                "are possibly optimistic.")
    else:
        kind, words = "official PCam split (train, valid -> val, test)", "official split"
        note = ("PCam patches carry no patient ids in this layout; the official split separates slides (Veeling et "
                "al. 2018).")
    summary: dict[str, Any] = {"n_items": len(ids), "class_names": list(source.class_names), "grouped_by": None,
                               "kind": kind, "description": words, "counts": counts, "note": note}
    if valid_to_train > 0:
        summary["valid_to_train"] = valid_to_train
        summary["val_rows"] = held
    return SplitFile(path=None, data_checksum=source.checksum, seed=0,
                     ratios=tuple(len(v) / n for v in chosen.values()),  # type: ignore[arg-type]
                     train=[ids[i] for i in train], val=[ids[i] for i in val],
                     test=[ids[i] for i in parts["test"]], dataset="pcam", summary=summary, method=None)


def _about(source: Any) -> str:
    """The model card's lines on the data: PatchCamelyon, and which of its forms was read."""
    from breastdx.data.pcam import PcamH5Source

    parts = getattr(source, "sources", [source])  # the three splits, concatenated
    h5 = [s for s in parts if isinstance(s, PcamH5Source)]
    form = (f"- Read from the HDF5 files of the release ({', '.join(f'{s.split}: {len(s):,} patches' for s in h5)}), "
            f"pixels as published." if len(h5) == len(parts) else
            "- The JPEG subset holds the first 2,000 patches per class of train, the last 3,000 of valid and the "
            "first 3,000 of test; JPEG re-encoding makes pixels differ slightly from the HDF5 release.")
    return ("- PatchCamelyon (Veeling et al. 2018, doi:10.1007/978-3-030-00934-2_24; CC0), from Camelyon16 lymph-node "
            "sections (metastases of breast cancer, not breast tissue). Label 1 = tumour in the centre 32 x 32 pixels "
            "of the 96 x 96 patch.\n" + form)


PCAM = register(ClassificationSpec(
    name="pcam",
    title="PCam histopathology patches: tumour vs normal",
    config_cls=PCamConfig,
    read=patch_reader(
        "pcam", official=official_split, split_options={"valid_to_train": lambda c: c.valid_to_train},
        about=_about),
    positive="tumour", item="patch", augmentation=hed_augmentation, normalisation=macenko_normalisation,
    check=_check, label_region=32 / 96, explain_zoom=3,
    benchmark=Benchmark(
        targets={"auroc": 0.95, "accuracy": 0.88},
        published={"P4M-DenseNet (Veeling et al. 2018)": {"auroc": 0.963, "accuracy": 0.898},
                   "DenseNet baseline (Veeling et al. 2018)": {"auroc": 0.947, "accuracy": 0.876}},
        note="Published figures: trained on all 262,144 training patches, tested on the full test split (32,768 "
             "patches); these are on the test patches counted in the split (the JPEG subset: its first 3,000), so "
             "the comparison is indicative."),
    card_limitations=(
        "Trained on the training patches the split counts above give (the JPEG subset: 4,000, 1.5% of PCam's "
        "training split), plus with --valid-to-train part of the validation patches; lymph-node tissue from two "
        "Dutch centres (Camelyon16); no external validation.",
        "With --valid-to-train, the validation patches kept (best epoch, temperature, threshold) are a block of "
        "PCam row indices that cannot be verified to come from other slides than the moved ones (no slide ids in "
        "the data): validation figures may be optimistic. The test split is PCam's own.",
        "The label concerns the centre 32 x 32 pixels only; the model sees the whole patch.",
        "PCam holds pixel-identical duplicate patches within the tumour class (48 groups in this test subset); "
        "metrics without them are in the training run's metrics.json.",
        "Patches only: no whole-slide inference or aggregation.",
        "Research use only; not for diagnosis."),
))
