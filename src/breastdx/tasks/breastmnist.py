"""BreastMNIST: malignant vs normal-or-benign on MedMNIST v2's 28 x 28 BUSI images, official split (a spec).

The 28 x 28 images are upsampled (bilinear) to ``--image-size`` (64 by default) for the network; a saved
model resizes any image to 28 x 28 first, as MedMNIST made them, then to the network size. MedMNIST's labels
are 0 = malignant, 1 = normal or benign; breastdx converts them to 1 = malignant
(:mod:`breastdx.data.breastmnist`). BreastMNIST's split is random: BUSI's near-duplicate frames cross it,
so these figures are optimistic compared with the grouped split of ``busi-cls``.

References:
    Yang, J. et al. (2023). MedMNIST v2. Scientific Data 10:41. doi:10.1038/s41597-022-01721-8
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastdx.config import option
from breastdx.data.image_sets import ImageSet, SplitData, ultrasound_augmentation
from breastdx.pipeline.classification import (Benchmark, ClassificationSpec, ImageClassificationConfig,
                                                 register)

MEDMNIST_V2_TABLE = {
    "ResNet-18 (28)": (0.901, 0.863), "ResNet-18 (224)": (0.891, 0.833), "ResNet-50 (28)": (0.857, 0.812),
    "ResNet-50 (224)": (0.866, 0.842), "auto-sklearn": (0.836, 0.803), "AutoKeras": (0.871, 0.831),
    "Google AutoML Vision": (0.919, 0.861),
}
"""BreastMNIST test (AUROC, accuracy) of the MedMNIST v2 paper's baselines (Yang et al. 2023, Table 3)."""


@dataclass(frozen=True)
class BreastMNISTConfig(ImageClassificationConfig):
    """Options of ``breastdx train breastmnist``: as :class:`~breastdx.pipeline.classification.ImageClassificationConfig`,
    and:

    Attributes:
        data_file: A ``breastmnist.npz`` to read instead of ``<data root>/breastmnist/breastmnist.npz``.
    """

    archs: tuple[str, ...] = ("resnet18",)
    epochs: int = option(60, ge=1)
    batch_size: int = option(32, ge=1)
    lr: float = option(1e-3, gt=0)
    precision: str = option("32", choices=("auto", "32", "bf16-mixed"))
    data_file: str = ""


def read(config: Any, data_root: Path, reuse: Path | None, out: Path) -> SplitData:
    """The official split stored in the ``.npz`` file (``reuse`` is not needed: the file holds the split)."""
    from breastdx.data.breastmnist import CLASS_NAMES, load_breastmnist, read_breastmnist
    from breastdx.runs import write_json

    data = read_breastmnist(config.data_file) if config.data_file else load_breastmnist(data_root)
    write_json({"dataset": "breastmnist", "kind": "official MedMNIST v2 split (stored in the .npz file)",
                "data_file": str(data.path), "data_checksum": data.sha256, "md5": data.md5,
                "official_file": data.official, "summary": data.summary(),
                "label_encoding": "breastdx: 1 = malignant, 0 = normal or benign (MedMNIST stores 0 = malignant)"}, out)

    def part(name: str) -> ImageSet:
        s = data.split(name)
        return ImageSet(tuple(f"{name}_{i}" for i in range(s.n)), s.labels.astype("int64"), lambda i: (s.images[i], None))

    about = (f"- BreastMNIST (MedMNIST v2; Yang et al. 2023, Scientific Data 10:41, doi:10.1038/s41597-022-01721-8), "
             f"made from BUSI (Al-Dhabyani et al. 2020, doi:10.1016/j.dib.2019.104863), CC BY 4.0: train "
             f"{data.train.n}, val {data.val.n}, test {data.test.n} images of 28x28.\n"
             f"- MedMNIST labels 0 = malignant, 1 = normal or benign; breastdx uses 1 = malignant.\n"
             f"- File MD5 {data.md5} ({'the official file' if data.official else 'a re-saved copy with the same arrays'}).")
    return SplitData({s: part(s) for s in ("train", "val", "test")}, tuple(CLASS_NAMES), data.sha256,
                     "official MedMNIST v2 split", about,
                     {"data_file": str(data.path), "data_md5": data.md5, "data_official": data.official})


BREASTMNIST = register(ClassificationSpec(
    name="breastmnist",
    title="BreastMNIST (MedMNIST v2) ultrasound benchmark, 28 x 28",
    config_cls=BreastMNISTConfig, read=read, positive="malignant", mode="gray", source_size=28,
    augmentation=ultrasound_augmentation,
    data_options=("data_file",),
    benchmark=Benchmark(targets={"auroc": 0.93, "accuracy": 0.88},
                        published={k: {"auroc": a, "accuracy": c} for k, (a, c) in MEDMNIST_V2_TABLE.items()},
                        note="MedMNIST v2 table (Yang et al. 2023): the same official test split; accuracy at argmax."),
    card_limitations=(
        "BreastMNIST's split is random: near-duplicate BUSI frames of one lesion can be in train and test, so the "
        "figures are optimistic (see busi-cls for a grouped split).",
        "28x28 images keep little texture; the model is a benchmark, not a diagnostic tool.",
        "Trained on one public dataset from one hospital (Cairo, 2018); other sites seen only in small external "
        "samples.",
        "Research use only; not for diagnosis."),
))
