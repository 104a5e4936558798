"""IDC: invasive ductal carcinoma vs not on 50 x 50 H&E patches, split by patient (a spec).

References:
    Janowczyk, A. & Madabhushi, A. (2016). Deep learning for digital pathology image analysis. J Pathol
    Inform 7:29, doi:10.4103/2153-3539.186902
    Cruz-Roa, A. et al. (2014). Automatic detection of invasive ductal carcinoma in whole slide images with
    convolutional neural networks. SPIE Medical Imaging, doi:10.1117/12.2043872
"""

from __future__ import annotations

from dataclasses import dataclass

from breastdx.config import option
from breastdx.data.image_sets import hed_augmentation, macenko_normalisation, patch_reader
from breastdx.pipeline.classification import Benchmark, ClassificationSpec, register
from breastdx.pipeline.patch_config import PATCH_CHECK, PatchConfig
from breastdx.pipeline.synthesis import MAX_SEED, with_synthetic


@dataclass(frozen=True)
class IdcConfig(PatchConfig):
    """Options of ``breastdx train idc``: as :class:`~breastdx.pipeline.patch_config.PatchConfig`; IDC
    patches are 50 x 50, trained at 48 x 48.

    Attributes:
        image_size: Side of the network input.
        synthetic_idc: Generated IDC patches added to the training part (0: none, the default; measured, they did
            not help: see ``docs/experiments/histopathology.md``). See :func:`breastdx.pipeline.synthesis.with_synthetic`.
        synthetic_model: The generator: a folder or a shipped generator's name (default ``idc-gan``).
        synthetic_seed: Seed of the generated patches, 0 to 2^64 - 1.
    """

    image_size: int = option(48, ge=16, multiple_of=16)
    synthetic_idc: int = option(0, ge=0)
    synthetic_model: str = ""
    synthetic_seed: int = option(0, ge=0, le=MAX_SEED)  # the generator's seed range


IDC = register(ClassificationSpec(
    name="idc",
    title="IDC histopathology patches: invasive ductal carcinoma vs not",
    config_cls=IdcConfig,
    read=with_synthetic(patch_reader("idc", about=(
        "- IDC (Janowczyk & Madabhushi 2016, doi:10.4103/2153-3539.186902; Cruz-Roa et al. 2014, "
        "doi:10.1117/12.2043872): 50 x 50 patches of breast-cancer whole-slide images scanned at 40x (the release: "
        "277,524 patches of 279 patients, Kaggle CC0); label 1 = invasive ductal carcinoma. Edge patches smaller "
        "than 50 x 50 are padded with white on the bottom and right. Split by patient."))),
    positive="tumour", item="patch", augmentation=hed_augmentation, normalisation=macenko_normalisation,
    check=PATCH_CHECK, explain_zoom=3, pad_to=(50, 50),
    benchmark=Benchmark(
        targets={"balanced_accuracy": 0.85, "f1": 0.77},
        published={"AlexNet (Janowczyk & Madabhushi 2016)": {"balanced_accuracy": 0.8468, "f1": 0.7648}},
        note="Published figures: trained and tested on the full release (277,524 patches of 279 patients) with "
             "their own patient split; these are on this run's test patients, so the comparison is indicative."),
    card_limitations=("Patches only: no whole-slide inference, no slide- or patient-level aggregation.",
                      "Trained and tested on one public dataset; no external validation.",
                      "Research use only; not for diagnosis."),
))
