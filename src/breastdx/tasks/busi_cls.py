"""BUSI classification: normal / benign / malignant breast-ultrasound images, with Grad-CAM (a spec).

Trained on the grouped, leak-free BUSI split shared with ``busi-seg`` (:func:`breastdx.data.splits.busi_split`;
``--split-file`` reuses busi-seg's ``split.json``). The multi-task U-Net (:mod:`breastdx.models.multitask`) also
learns the lesion masks (``--seg-weight``) and can start from a busi-seg model (``--init-busi-seg``). With
``--lesion-crop SEGMENTER`` it classifies the lesion region that a busi-seg model finds instead of the whole image
(lesion-aware classification, :mod:`breastdx.inference.lesion_crop`, fused with a whole-image model by
``benchmarks/busi_lesion_aware.py``). Grad-CAM maps are checked against the lesion masks of the test images
(share of the map's mass inside the lesion, pointing game). Target: accuracy >= 0.88 and macro AUROC >= 0.95 on
the grouped test split without ImageNet weights (published ResNet / EfficientNet results with ImageNet weights on
random, leaky BUSI splits reach accuracy 0.85-0.90).

References:
    Al-Dhabyani, W. et al. (2020). Dataset of breast ultrasound images. Data in Brief 28:104863.
    doi:10.1016/j.dib.2019.104863
    Zhang, J. et al. (2018). Top-down neural attention by excitation backprop. IJCV 126:1084,
    doi:10.1007/s11263-017-1059-x (pointing game)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.config import ConfigError, option
from breastdx.data.splits import DEFAULT_SPLIT_METHOD, SPLIT_METHODS
from breastdx.data.image_sets import ImageSet, SplitData, ultrasound_augmentation
from breastdx.data.transforms import INTENSITIES
from breastdx.pipeline.classification import (Benchmark, ClassificationSpec, ImageClassificationConfig,
                                                 register)

log = logging.getLogger(__name__)

LESION_CLASSES = ("benign", "malignant")


@dataclass(frozen=True)
class BusiClsConfig(ImageClassificationConfig):
    """Options of ``breastdx train busi-cls``: as :class:`~breastdx.pipeline.classification.ImageClassificationConfig`,
    and:

    Attributes:
        seg_weight: Weight of the lesion-mask loss of the multi-task U-Net (0: class loss only).
        split_file: A split file to reuse (busi-seg's ``split.json``); empty to make the grouped split.
        split_seed: Seed of a new split.
        split_method: How a new split places BUSI's near-duplicate groups (the frames of one lesion):
            ``proportional`` (val and test get groups in proportion) or ``absolute`` (the rule before 2026-12-06,
            which puts every group into training and leaves val and test single images; it reproduces the splits
            made then, the shipped models' included); as busi-seg's option.
        init_busi_seg: Initialise the multi-task U-Net from a busi-seg model: ``shipped`` or a model folder
            (empty: no). Its training split must not hold this run's validation or test cases.
        busi_seg_encoder_only: Load only the busi-seg encoder (else the decoder too).
        freeze_encoder: Keep the encoder loaded from ``init_busi_seg`` fixed and train the rest (the class head: a
            linear probe of the segmenter's features, which travel better than fine-tuned ones in Kumar et al. 2022,
            arXiv:2202.10054); needs ``init_busi_seg``.
        localisation: Check the Grad-CAM maps against the test lesion masks.
        scanner_augment: Add the augmentations aimed at other scanners (as ``busi-seg``'s option: crops hiding
            text and calipers, smooth gain field, lower resolution, Rician speckle noise).
        lesion_crop: Lesion-aware classification: classify the lesion region that this busi-seg model finds
            (``shipped`` or a model folder), cropped square with ``crop_margin`` (:mod:`breastdx.inference.lesion_crop`;
            the whole image where it finds none), instead of the whole image; empty: the whole image. Its
            training split must hold none of this run's validation or test cases.
        crop_margin: Margin on every side of the lesion box, as a fraction of its larger side.
        intensity: ``divide_255`` (the default), ``equalize_hist`` or ``clahe``: equalise each resized image's
            histogram before the network, in training and prediction alike (as ``busi-seg``'s option).
    """

    archs: tuple[str, ...] = ("unet_multitask", "resnet18")
    image_size: int = option(128, ge=16, multiple_of=16)
    epochs: int = option(60, ge=1)
    batch_size: int = option(32, ge=1)
    lr: float = option(1e-3, gt=0)
    precision: str = option("32", choices=("auto", "32", "bf16-mixed"))
    seg_weight: float = option(1.0, ge=0)
    split_file: str = ""
    split_seed: int = option(0, ge=0, le=2**32 - 1)  # NumPy seeds are 32-bit
    split_method: str = option(DEFAULT_SPLIT_METHOD, choices=SPLIT_METHODS)
    init_busi_seg: str = ""
    busi_seg_encoder_only: bool = True
    freeze_encoder: bool = False
    localisation: bool = True
    scanner_augment: bool = False
    lesion_crop: str = ""
    crop_margin: float = option(0.3, ge=0, le=2)
    intensity: str = option("divide_255", choices=INTENSITIES)


def read(config: Any, data_root: Path, reuse: Path | None, out: Path) -> SplitData:
    """BUSI's grouped split (near-duplicate frames never cross it): reused from ``reuse``, else made. Each image's
    group is its lesion: the index of its near-duplicate group in the split file, or its own name when it has none.

    Raises:
        DataError: If BUSI is missing, or a reused split does not fit the data.
    """
    from breastdx.data.busi import BUSI_CLASSES, data_card_line, find_busi_root, load_case, scan_busi
    from breastdx.data.splits import busi_split

    root = find_busi_root(data_root)
    by_name = {c.name: c for c in scan_busi(root)}
    if reuse is not None:
        split = busi_split(data_root, reuse, reuse_only=True)
        split.to_json(out)
    else:
        split = busi_split(data_root, out, seed=config.split_seed, method=config.split_method,
                           reuse_only=out.is_file())  # a resumed run's own split, as it was made

    lesion = {n: str(k) for k, members in enumerate(split.groups) for n in members}

    def part(name: str) -> ImageSet:
        cases = [by_name[n] for n in split.split(name)]
        return ImageSet(tuple(c.name for c in cases), np.array([c.label_index for c in cases], dtype=np.int64),
                        lambda i: load_case(cases[i], mode="gray"), tuple(lesion.get(c.name, c.name) for c in cases))

    parts = {s: part(s) for s in ("train", "val", "test")}
    record: dict[str, Any] = {"data_folder": str(root)}
    about = (data_card_line(split.n_cases()) + "\n"
             f"- Split: the grouped split of busi-seg (seed {split.seed}, ratios {list(split.ratios)}, method "
             f"{split.method}): near-duplicate frames never cross train / val / test; {split.excluded_text()}.")
    if config.lesion_crop:
        cropper = _segmenter(config.lesion_crop, config.crop_margin, split)
        parts = {s: _lesion_crops(p, cropper) for s, p in parts.items()}
        about += (f"\n- Inputs: the lesion region found by the busi-seg model {config.lesion_crop!r}, cropped square "
                  f"with a margin of {config.crop_margin:g} of its side (the whole image where it finds none).")
    return SplitData(parts, tuple(BUSI_CLASSES), split.data_checksum, "grouped by near-duplicates", about, record,
                     split)


def _segmenter(segmenter: str, margin: float, split: Any) -> Any:
    """The :class:`~breastdx.inference.lesion_crop.LesionCropper` of ``--lesion-crop``, once its training split is
    checked against ``split``.

    Raises:
        InitWeightsError: If the segmenter trained on a validation or test case of ``split``.
    """
    from breastdx.data.splits import SplitFile
    from breastdx.inference.lesion_crop import LesionCropper
    from breastdx.models.init_weights import check_no_leak

    cropper = LesionCropper.from_model(segmenter, margin)
    check_no_leak(SplitFile.from_json(cropper.model_dir / "split.json"), split, str(cropper.model_dir))
    return cropper


def _lesion_crops(part: ImageSet, cropper: Any) -> ImageSet:
    """``part`` with each image (and mask) cropped to the lesion box ``cropper`` finds in it (found on the first
    read of an image, then kept)."""
    from breastdx.data.lesion_crop import crop

    boxes: dict[int, tuple[int, int, int, int]] = {}

    def read(i: int) -> tuple[np.ndarray, np.ndarray | None]:
        image, mask = part.read(i)
        if i not in boxes:
            boxes[i] = cropper.boxes([image])[0]
        return crop(image, boxes[i]), None if mask is None else crop(mask, boxes[i])

    return ImageSet(part.ids, part.labels, read, part.groups)


def localisation(predictor: Any, part: ImageSet, method: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Grad-CAM maps of the true class on the lesion images of ``part``, scored against their masks
    (:func:`breastdx.explain.gradcam.localisation_summary`); also returns the maps (``cams``) and the positions
    of the lesion images in ``part`` (``indices``)."""
    from breastdx.explain.gradcam import localisation_summary

    lesion = [i for i in range(len(part)) if part.labels[i] in (1, 2)]  # benign, malignant
    if not lesion:
        return {"n_images": 0, "method": method}
    loaded = [part.read(i) for i in lesion]
    _, _, cams = predictor.explain([im for im, _ in loaded], method=method, class_idx=part.labels[lesion])
    summary = localisation_summary(cams, [m for _, m in loaded], n_boot=n_boot, seed=seed)
    return {**summary, "method": method, "explained_class": "true class", "cams": cams, "indices": lesion}


def initialiser(config: Any, arch: str, data: SplitData):
    """``--init-busi-seg``: the multi-task U-Net starts from a busi-seg model whose training split holds none of
    this run's validation or test cases."""
    if not (config.init_busi_seg and arch == "unet_multitask"):
        return None

    def init(network: Any):
        from breastdx.models.init_weights import init_from_busi_seg

        report = init_from_busi_seg(network, config.init_busi_seg, encoder_only=config.busi_seg_encoder_only,
                                    target_split=data.split)
        if config.freeze_encoder:  # the optimiser skips parameters without a gradient
            encoder = set(network.encoder_parameter_names())
            frozen = [p.requires_grad_(False) for n, p in network.named_parameters() if n in encoder]
            log.info("--freeze-encoder: %d encoder tensors (%d parameters) kept as loaded", len(frozen),
                     sum(p.numel() for p in frozen))
        return report

    return init


def check(config: Any) -> None:
    """``--init-busi-seg`` needs the multi-task U-Net among ``--archs``, and ``--freeze-encoder`` needs
    ``--init-busi-seg``."""
    if config.init_busi_seg and "unet_multitask" not in config.archs:
        raise ConfigError("The 'init-busi-seg' option of busi-cls initialises the multi-task U-Net only; add "
                          "unet_multitask to --archs.")
    if config.freeze_encoder and not config.init_busi_seg:
        raise ConfigError("The 'freeze-encoder' option of busi-cls keeps a busi-seg encoder fixed; give the "
                          "busi-seg model with --init-busi-seg (e.g. --init-busi-seg shipped).")


BUSI_CLS = register(ClassificationSpec(
    name="busi-cls",
    title="BUSI ultrasound classification (normal / benign / malignant) with Grad-CAM",
    config_cls=BusiClsConfig, read=read, positive="malignant", mode="gray", augmentation=ultrasound_augmentation,
    near_duplicates=True, group_unit="lesion",
    train_masks=True, localisation=localisation, initialiser=initialiser, check=check, predict_gradcam=True,
    summary=("accuracy", "balanced_accuracy", "macro_auroc", "auroc", "sensitivity", "specificity", "ppv", "npv",
             "f1", "brier", "ece", "sensitivity_normal", "sensitivity_benign", "sensitivity_malignant",
             "specificity_normal", "specificity_benign", "specificity_malignant"),
    benchmark=Benchmark(targets={"accuracy": 0.88, "macro_auroc": 0.95}, published={},
                        note="Published ResNet / EfficientNet results with ImageNet weights on random (leaky) BUSI "
                             "splits reach accuracy 0.85-0.90; these figures are on the grouped split, without "
                             "ImageNet weights."),
    data_options=("lesion_crop", "crop_margin"),
    card_limitations=(
        "One public dataset from one hospital and one period; no external validation.",
        "Burned-in calipers, text and marks are present in many BUSI images; the model may use them (check the "
        "Grad-CAM maps).",
        "Images are resized to a square without keeping the aspect ratio.",
        "Grad-CAM maps are coarse (the target layer is 1/16 of the input size) and show evidence for a class, not a "
        "lesion outline.",
        "Research use only; not for diagnosis."),
))
