"""BreakHis: malignant vs benign H&E images, split by patient, optionally at one magnification (a spec).

References:
    Spanhol, F. A. et al. (2016). A dataset for breast cancer histopathological image classification. IEEE
    Trans Biomed Eng 63(7):1455-1462, doi:10.1109/TBME.2015.2496264
"""

from __future__ import annotations

from dataclasses import dataclass

from breastdx.config import option
from breastdx.data.image_sets import hed_augmentation, macenko_normalisation, patch_reader
from breastdx.pipeline.classification import PATCH_CHECK, ClassificationSpec, PatchConfig, register


@dataclass(frozen=True)
class BreakHisConfig(PatchConfig):
    """Options of ``breastdx train breakhis``: as :class:`~breastdx.pipeline.classification.PatchConfig`;
    700 x 460 images resized to 128 x 128, and:

    Attributes:
        image_size: Side of the network input.
        magnification: 40, 100, 200 or 400 (0: every magnification).
    """

    image_size: int = option(128, ge=16, multiple_of=16)
    magnification: int = option(0, choices=(0, 40, 100, 200, 400))


BREAKHIS = register(ClassificationSpec(
    name="breakhis",
    title="BreakHis histopathology images: malignant vs benign (compact CNN vs ResNet-18)",
    config_cls=BreakHisConfig,
    read=patch_reader("breakhis", magnification=lambda c: c.magnification or None, about=(
        "- BreakHis (Spanhol et al. 2016, doi:10.1109/TBME.2015.2496264): 700 x 460 H&E images of 82 patients at "
        "40-400x; label 1 = malignant.")),
    positive="malignant", item="image", augmentation=hed_augmentation, normalisation=macenko_normalisation,
    check=PATCH_CHECK, data_options=("magnification",),
    card_limitations=("Images of regions chosen by pathologists: no whole-slide inference or aggregation.",
                      "Trained and tested on one public dataset; no external validation.",
                      "Research use only; not for diagnosis."),
))
