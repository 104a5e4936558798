"""BreastMNIST: malignant vs normal-or-benign on MedMNIST v2's 28 x 28 BUSI images, official split (a spec).

The 28 x 28 images are upsampled (bilinear) to ``--image-size`` (64 by default) for the network; a saved
model cuts any image's central square and resizes it to 28 x 28 first, as MedMNIST made them from BUSI
(:mod:`breastdx.data.breastmnist_masks`), then to the network size. MedMNIST's labels
are 0 = malignant, 1 = normal or benign; breastdx converts them to 1 = malignant
(:mod:`breastdx.data.breastmnist`). BreastMNIST's split is random: BUSI's near-duplicate frames cross it:
64 of the 156 test images have another frame of the same lesion in training or validation
(``benchmarks/breastmnist_leak.py``); ``busi-cls`` has a grouped split.

References:
    Yang, J. et al. (2023). MedMNIST v2. Scientific Data 10:41. doi:10.1038/s41597-022-01721-8
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastdx.config import ConfigError, option
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
        lesion_masks: Learn BUSI's lesion mask of each training image beside its class (multi-task U-Net,
            ``unet_multitask``): every BreastMNIST image is BUSI's central square at 28 x 28, so its source and
            mask are found in ``<data root>/busi`` (:mod:`breastdx.data.breastmnist_masks`). Validation and test
            images get no mask; prediction takes the 28 x 28 image alone.
        seg_weight: Weight of the lesion-mask loss (Dice + cross-entropy) beside the class loss.
    """

    archs: tuple[str, ...] = ("resnet18",)
    epochs: int = option(60, ge=1)
    batch_size: int = option(32, ge=1)
    lr: float = option(1e-3, gt=0)
    precision: str = option("32", choices=("auto", "32", "bf16-mixed"))
    data_file: str = ""
    lesion_masks: bool = False
    seg_weight: float = option(1.0, ge=0)


def _file_text(data: Any) -> str:
    """What the model card can say of the file read: the official one (its published MD5), a file of another MD5
    with the official split sizes (a re-saved copy, as ``../shared/data`` holds; its pixels are not checked against
    the official ones), or other data in BreastMNIST's format."""
    from breastdx.data.breastmnist import OFFICIAL_SIZES

    if data.official:
        return "the official file (the MD5 MedMNIST publishes)"
    if all(getattr(data, s).n == n for s, n in OFFICIAL_SIZES.items()):
        return ("not the official file but of its split sizes (546 / 78 / 156), as a re-saved copy is; its pixels "
                "were not compared with the official ones")
    return ("not the official file, nor of its split sizes: other images in BreastMNIST's format, whose origin is "
            "the data owner's to state")


def read(config: Any, data_root: Path, reuse: Path | None, out: Path) -> SplitData:
    """The official split stored in the ``.npz`` file (``reuse`` is not needed: the file holds the split)."""
    from breastdx.data.breastmnist import CLASS_NAMES, load_breastmnist, read_breastmnist
    from breastdx.data.breastmnist_masks import busi_lesion_masks
    from breastdx.runs import write_json

    data = read_breastmnist(config.data_file) if config.data_file else load_breastmnist(data_root)
    write_json({"dataset": "breastmnist", "kind": "official MedMNIST v2 split (stored in the .npz file)",
                "data_file": str(data.path), "data_checksum": data.sha256, "md5": data.md5,
                "official_file": data.official, "summary": data.summary(),
                "label_encoding": "breastdx: 1 = malignant, 0 = normal or benign (MedMNIST stores 0 = malignant)"}, out)

    record: dict[str, Any] = {"data_file_read": str(data.path), "data_md5": data.md5, "data_official": data.official}

    def part(name: str) -> ImageSet:
        s = data.split(name)
        ids = tuple(f"{name}_{i}" for i in range(s.n))
        if name == "train" and config.lesion_masks:
            masks, matches = busi_lesion_masks(s.images, s.labels, data_root, ids)
            record["lesion_mask_matches"] = {"source": "busi", "images": len(matches),
                                      "with_lesion": int(sum(m.any() for m in masks)),
                                      "smallest_r": round(min(m.r for m in matches), 6)}
            return ImageSet(ids, s.labels.astype("int64"), lambda i: (s.images[i], masks[i]))
        return ImageSet(ids, s.labels.astype("int64"), lambda i: (s.images[i], None))

    about = (f"- BreastMNIST (MedMNIST v2; Yang et al. 2023, Scientific Data 10:41, doi:10.1038/s41597-022-01721-8), "
             f"made from BUSI (Al-Dhabyani et al. 2020, doi:10.1016/j.dib.2019.104863), CC BY 4.0: train "
             f"{data.train.n}, val {data.val.n}, test {data.test.n} images of 28x28.\n"
             f"- MedMNIST labels 0 = malignant, 1 = normal or benign; breastdx uses 1 = malignant.\n"
             f"- File MD5 {data.md5}: {_file_text(data)}.")
    parts = {s: part(s) for s in ("train", "val", "test")}
    if config.lesion_masks:
        about += (f"\n- Training images with BUSI's lesion mask as a second target (each image matched to its BUSI "
                  f"source, Pearson r >= {record['lesion_mask_matches']['smallest_r']:.4f}; "
                  f"{record['lesion_mask_matches']['with_lesion']} of {data.train.n} with a lesion).")
    return SplitData(parts, tuple(CLASS_NAMES), data.sha256, "official MedMNIST v2 split", about, record)


def check(config: Any) -> None:
    """``--lesion-masks`` needs a network that learns masks (``unet_multitask`` with its decoder) and a mask loss
    weight."""
    if not config.lesion_masks:
        return
    from breastdx.training.classification import parse_arch_args

    decoder = parse_arch_args(config.arch_args, config.archs).get("unet_multitask", {}).get("decoder", True)
    if "unet_multitask" not in config.archs or config.seg_weight <= 0 or not decoder:
        raise ConfigError("The 'lesion-masks' option of breastmnist trains the multi-task U-Net's mask output: add "
                          "unet_multitask to --archs, keep its decoder and keep --seg-weight above 0.")


BREASTMNIST = register(ClassificationSpec(
    name="breastmnist",
    title="BreastMNIST (MedMNIST v2) ultrasound benchmark, 28 x 28",
    config_cls=BreastMNISTConfig, read=read, positive="malignant", mode="gray", source_size=28,
    source_crop="central_square", near_duplicates=True,
    augmentation=ultrasound_augmentation, train_masks=lambda config: config.lesion_masks, check=check,
    data_options=("data_file",),
    benchmark=Benchmark(targets={"auroc": 0.93, "accuracy": 0.88},
                        published={k: {"auroc": a, "accuracy": c} for k, (a, c) in MEDMNIST_V2_TABLE.items()},
                        note="MedMNIST v2 table (Yang et al. 2023): the same official test split; accuracy at argmax."),
    card_limitations=(
        "BreastMNIST's split is random: 64 of the 156 test images have another frame of the same lesion among the "
        "training and validation images (`benchmarks/breastmnist_leak.py` scores a model without them; busi-cls "
        "has a grouped split).",
        "28x28 images keep little texture; the model is a benchmark, not a diagnostic tool.",
        "Trained on one public dataset from one hospital (Cairo, 2018); other sites seen only in small external "
        "samples.",
        "Research use only; not for diagnosis."),
))
