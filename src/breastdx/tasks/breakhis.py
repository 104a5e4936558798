"""BreakHis: the 8 subtypes (and so malignant vs benign) of H&E images, split by patient, optionally at one
magnification (a spec).

With ``--labels subtype`` (the default) the network has one output per subtype, named ``"benign/adenosis"`` ...
``"malignant/papillary_carcinoma"``; P(malignant) is the sum of the four malignant subtypes, so ``auroc``,
sensitivity and the operating threshold are malignant vs benign, and ``subtype_balanced_accuracy`` is the mean
recall over the subtypes present in the test split. A subtype held by one patient (A, PT and LC in the derived
200x copy) is kept in training: it cannot be tested on an unseen patient (:func:`breastdx.data.patch_split.make_patch_split`).
``--labels binary`` trains malignant vs benign directly.

References:
    Spanhol, F. A. et al. (2016). A dataset for breast cancer histopathological image classification. IEEE
    Trans Biomed Eng 63(7):1455-1462, doi:10.1109/TBME.2015.2496264
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from breastdx.config import option
from breastdx.data.image_sets import hed_augmentation, macenko_normalisation, patch_reader
from breastdx.pipeline.classification import SUMMARY, Benchmark, ClassificationSpec, register
from breastdx.pipeline.patch_config import PATCH_CHECK, PatchConfig


@dataclass(frozen=True)
class BreakHisConfig(PatchConfig):
    """Options of ``breastdx train breakhis``: as :class:`~breastdx.pipeline.patch_config.PatchConfig`;
    700 x 460 images resized to 128 x 128, and:

    Attributes:
        image_size: Side of the network input.
        magnification: 40, 100, 200 or 400 (0: every magnification).
        labels: ``subtype`` (8 classes; malignant = the sum of its 4 subtypes) or ``binary`` (benign, malignant).
    """

    image_size: int = option(128, ge=16, multiple_of=16)
    magnification: int = option(0, choices=(0, 40, 100, 200, 400))
    labels: str = option("subtype", choices=("subtype", "binary"))


def breakhis_about(source) -> str:
    """The model card's data line for the BreakHis images a run read: the release's description, with what was
    read (images, patients, magnifications, and whether they are the derived 224 x 224 copy of
    ``../shared/data/breakhis_224`` or files of the release, 700 x 460)."""
    import numpy as np

    mags = sorted({int(m) for m in np.asarray(source.metadata.get("magnification", []))})
    derived = any(Path(str(i)).name.startswith("SOBderived_") for i in source.ids)
    patients = len(set(map(str, source.groups))) if source.groups is not None else None
    what = (f"{len(source)} images" + (f" of {patients} patients" if patients else "")
            + (f" at {', '.join(f'{m}x' for m in mags)}" if mags else "")
            + (", a derived copy cut to 224 x 224 (see its PROVENANCE.md), not the release's 700 x 460 files"
               if derived else ""))
    return ("- BreakHis (Spanhol et al. 2016, doi:10.1109/TBME.2015.2496264): the release holds 7,909 700 x 460 H&E "
            "images of 82 patients at 40-400x, in 8 subtypes (benign adenosis, fibroadenoma, phyllodes tumour, "
            f"tubular adenoma; malignant ductal, lobular, mucinous, papillary carcinoma). Read for this model: {what}. "
            "With subtype labels, P(malignant) is the sum over the malignant subtypes.")


BREAKHIS = register(ClassificationSpec(
    name="breakhis",
    title="BreakHis histopathology images: 8 subtypes, malignant vs benign",
    config_cls=BreakHisConfig,
    read=patch_reader("breakhis", magnification=lambda c: c.magnification or None, labels=lambda c: c.labels,
                      about=breakhis_about),
    positive="malignant", item="image", augmentation=hed_augmentation, normalisation=macenko_normalisation,
    check=PATCH_CHECK, data_options=("magnification", "labels"), summary=(*SUMMARY, "subtype_balanced_accuracy"),
    benchmark=Benchmark(targets={"auroc": 0.90}, published={},
                        note="The target: malignant vs benign AUROC on patients never seen in training."),
    card_limitations=("Images of regions chosen by pathologists: no whole-slide inference or aggregation.",
                      "Subtypes held by one patient (adenosis, phyllodes tumour and lobular carcinoma in the 200x "
                      "derived copy) are learnt but never tested on an unseen patient; the subtype figures cover "
                      "the others.",
                      "Trained and tested on one public dataset; no external validation.",
                      "Research use only; not for diagnosis."),
))
