"""Lesion crops for lesion-aware classification: a busi-seg segmenter finds the lesion, the crop keeps it with a margin.

A busi-cls model trained with ``--lesion-crop SEGMENTER`` classifies these crops (the boxes of
:func:`breastdx.data.lesion_crop.lesion_box`); where the segmenter finds nothing, the whole image. The same
segmenter and margin are used in training, evaluation and prediction, and are recorded in the model's training
config. :class:`LesionFusion` pools the crop model's probabilities with a whole-image model's (a linear opinion
pool), with the weight that grouped cross-validation chose (``benchmarks/busi_cls_cv_lesion.py``).

References:
    Stone, M. (1961). The opinion pool. Annals of Mathematical Statistics 32:1339-1342.
    doi:10.1214/aoms/1177704873
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.data.lesion_crop import DEFAULT_MARGIN, crop, lesion_box

LESION_MODEL_FOLDER = "lesion_crop"
"""The folder, inside a whole-image model's folder, of the lesion-crop model that the lesion-aware mode fuses
(``predict --lesion-aware``, ``serve --lesion-aware``)."""


def crop_setting(meta: Any) -> tuple[str, float] | None:
    """``(segmenter, margin)`` of a classifier trained with ``--lesion-crop`` (from its ``meta.json``'s training
    config), else None."""
    trained = meta.get("training_config", {})
    if not trained.get("lesion_crop"):
        return None
    return str(trained["lesion_crop"]), float(trained.get("crop_margin", DEFAULT_MARGIN))


@dataclass
class LesionCropper:
    """Crops each image to the lesion its segmenter finds.

    Args:
        segmenter: A :class:`~breastdx.inference.predictor.SegmentationPredictor` (busi-seg).
        margin: Margin on every side, as a fraction of the lesion's larger side (>= 0).
        model_dir: The segmenter's model folder, when it was loaded from one.
    """

    segmenter: Any
    margin: float = DEFAULT_MARGIN
    model_dir: Path | None = None

    @classmethod
    def from_model(cls, model: str, margin: float = DEFAULT_MARGIN, **options: Any) -> "LesionCropper":
        """The cropper of a shipped segmenter's name (``shipped`` or ``busi-seg``) or a busi-seg model folder.

        Raises:
            FileNotFoundError: If the model is neither.
            ModelFolderError: If the folder is not a busi-seg model.
        """
        from breastdx.inference.predictor import SegmentationPredictor
        from breastdx.zoo import resolve_model

        folder = resolve_model("busi-seg" if model == "shipped" else model, "busi-seg")
        return cls(SegmentationPredictor.from_dir(folder, task="busi-seg", **options), float(margin), folder)

    @classmethod
    def for_classifier(cls, meta: Any, **options: Any) -> "LesionCropper | None":
        """The cropper a classifier trained with ``--lesion-crop`` was trained with (:func:`crop_setting`), else None.

        Raises:
            As :meth:`from_model`.
        """
        setting = crop_setting(meta)
        return None if setting is None else cls.from_model(*setting, **options)

    def boxes(self, images: Sequence[np.ndarray]) -> list[tuple[int, int, int, int]]:
        """``(y0, y1, x0, x1)`` per uint8 image ``(H, W[, 3])``: the lesion box, or the whole image."""
        if not len(images):
            return []
        outputs = self.segmenter.predict(list(images), keep_prob=False)
        return [lesion_box(o.mask, self.margin) for o in outputs]

    def crops(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The crop of each image (uint8, its own size)."""
        return [crop(im, b) for im, b in zip(images, self.boxes(images))]


FUSION_WEIGHTS = tuple(round(0.1 * k, 1) for k in range(11))
"""Weights of the whole-image probability tried by :func:`choose_fusion_weight`."""


def fuse(p_whole: np.ndarray, p_crop: np.ndarray, weight: float) -> np.ndarray:
    """The linear pool ``weight * p_whole + (1 - weight) * p_crop`` of two ``(n, K)`` probability arrays.

    Raises:
        ValueError: If the shapes differ or ``weight`` is outside [0, 1].
    """
    p_whole, p_crop = np.asarray(p_whole, dtype=np.float64), np.asarray(p_crop, dtype=np.float64)
    if p_whole.shape != p_crop.shape:
        raise ValueError(f"The whole-image and crop probabilities differ in shape: {p_whole.shape} vs {p_crop.shape}.")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"The fusion weight must be in [0, 1], got {weight}.")
    return weight * p_whole + (1.0 - weight) * p_crop


def choose_fusion_weight(labels: np.ndarray, p_whole: np.ndarray, p_crop: np.ndarray,
                         weights: Sequence[float] = FUSION_WEIGHTS) -> tuple[float, dict[float, float]]:
    """The weight of the whole image whose fused probabilities have the lowest mean negative log-likelihood on
    ``labels`` (validation cases); the first of equal ones (the grid runs from the crop alone to the whole image
    alone).

    Args:
        labels: int ``(n,)`` class indices.
        p_whole: float ``(n, K)`` whole-image probabilities.
        p_crop: float ``(n, K)`` lesion-crop probabilities.
        weights: The weights tried, each in [0, 1].

    Returns:
        ``(weight, {weight: NLL})``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    nll = {}
    for w in weights:
        p = fuse(p_whole, p_crop, w)[np.arange(labels.size), labels]
        nll[float(w)] = float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))
    best = min(nll, key=lambda w: (round(nll[w], 12), w))
    return best, nll


@dataclass
class LesionFusion:
    """Lesion-aware classification: a whole-image classifier's probabilities fused with a lesion-crop classifier's.

    ``fused = whole_weight * P(whole) + (1 - whole_weight) * P(crop)``, the crop found by ``cropper``. The weight and
    the operating threshold on the fused P(malignant) are kept in the crop model's ``meta.json`` under ``fusion``
    (written by ``benchmarks/busi_lesion_aware.py --write-fusion`` with the weight that cross-validation chose).

    Args:
        crop_model: The :class:`~breastdx.inference.classifier.ClassificationPredictor` trained on lesion crops.
        cropper: Its :class:`LesionCropper` (the segmenter and margin it was trained with).
        whole_weight: Weight of the whole-image probability, in [0, 1].
        threshold: Operating threshold on the fused P(malignant), or None for the argmax.
    """

    crop_model: Any
    cropper: LesionCropper
    whole_weight: float
    threshold: float | None = None

    def __call__(self, images: Sequence[np.ndarray], p_whole: np.ndarray) -> np.ndarray:
        """The fused ``(n, K)`` probabilities of uint8 images, given the whole-image model's ``p_whole``."""
        if not len(images):
            return np.asarray(p_whole, dtype=np.float64)
        return fuse(p_whole, self.crop_model.predict_proba(self.cropper.crops(images)), self.whole_weight)

    @classmethod
    def from_model(cls, crop_model: Any, **options: Any) -> "LesionFusion":
        """The fusion recorded in a crop model's ``meta.json`` (``fusion``), with the segmenter of its training.

        Args:
            crop_model: The lesion-crop classifier.
            **options: Options of the segmenter's predictor (``batch_size``, ``dtype``, ``backend``): those the
                classifiers were loaded with, so that all three networks run as asked.

        Raises:
            ValueError: If the model was not trained on lesion crops or has no ``fusion`` record.
        """
        record = crop_model.meta.get("fusion")
        if crop_setting(crop_model.meta) is None or not record:
            raise ValueError("This model has no lesion-aware fusion: it must be trained with --lesion-crop and carry "
                             "a 'fusion' record in meta.json.")
        cropper = LesionCropper.for_classifier(crop_model.meta, **options)
        return cls(crop_model, cropper, float(record["whole_weight"]), record.get("threshold"))

    @classmethod
    def for_whole_model(cls, whole: Any, model_dir: str | Path, **options: Any) -> "LesionFusion | None":
        """The fusion of a whole-image model with the crop model kept in its folder (:data:`LESION_MODEL_FOLDER`),
        or None when the folder keeps none.

        Args:
            whole: The whole-image predictor (its task is the crop model's).
            model_dir: The whole-image model's folder.
            **options: Options of the crop model's and its segmenter's predictors (``batch_size``, ``dtype``,
                ``backend``).

        Raises:
            ValueError: If the crop model cannot be fused (see :meth:`from_model`); the message names its folder.
        """
        from breastdx.inference.base import load_predictor

        folder = Path(model_dir) / LESION_MODEL_FOLDER
        if not (folder / "meta.json").is_file():
            return None
        try:
            return cls.from_model(load_predictor(folder, task=whole.meta.get("task"), **options), **options)
        except ValueError as e:
            raise ValueError(f"{folder}: {e}") from None
