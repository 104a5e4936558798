"""Segmentation predictor: rebuild a network from its model folder alone, predict lesion masks at the original size.

A segmentation model folder holds ``model.safetensors`` (the state dict), ``meta.json`` and
``MODEL_CARD.md``. ``meta.json`` gives the network (``architecture``, ``architecture_args``,
``in_channels``, ``class_names``), the preprocessing (:class:`breastdx.data.transforms.Preprocessing`),
the decision threshold and the postprocessing (:class:`Postprocessing`), and how to run inference
(``inference``: the dtypes validated for it and test-time augmentation; the dtype used is chosen per
machine, see :mod:`breastdx.runtime`). Weights are read with ``safetensors``; nothing is
unpickled.

Pipeline per image ``(H, W)``: resize to ``(S, S)``, network, lesion probability (softmax), optional
left-right flip averaging, bilinear resize of the probability back to ``(H, W)``, threshold, optional
removal of small components / all but the largest one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from breastdx.data.transforms import restore_size
from breastdx.inference.base import (  # noqa: F401  (WEIGHTS_FILE ... load_weights: the names tasks/ import from here)
    INFERENCE_DTYPES, PREDICTORS, TTA_MODES, WEIGHTS_FILE, ImagePredictor, load_weights, save_weights)
from breastdx.inference.lesion_size import max_feret_diameter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Postprocessing:
    """How a lesion probability map becomes a mask.

    Attributes:
        threshold: Pixels with probability >= threshold are lesion.
        keep_largest: Keep only the largest connected component (8-connectivity).
        min_area_fraction: Remove components smaller than this fraction of the image area (0 keeps all).
    """

    threshold: float = 0.5
    keep_largest: bool = False
    min_area_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"Postprocessing.threshold must be in (0, 1), got {self.threshold}.")
        if not 0.0 <= float(self.min_area_fraction) < 1.0:
            raise ValueError(f"Postprocessing.min_area_fraction must be in [0, 1), got {self.min_area_fraction}.")

    def to_meta(self) -> dict[str, Any]:
        """The fields as a dictionary for ``meta.json``."""
        return asdict(self)

    @classmethod
    def from_meta(cls, data: dict[str, Any]) -> "Postprocessing":
        """Rebuild from :meth:`to_meta` output."""
        return cls(**{k: data[k] for k in ("threshold", "keep_largest", "min_area_fraction") if k in data})

    def apply(self, prob: np.ndarray) -> tuple[np.ndarray, int]:
        """Threshold and clean a probability map.

        Args:
            prob: Lesion probability, float ``(H, W)``.

        Returns:
            ``(mask bool (H, W), number of connected components kept)``.
        """
        mask = prob >= self.threshold
        if not mask.any():
            return mask, 0
        if not self.keep_largest and self.min_area_fraction <= 0:
            return mask, int(ndimage.label(mask, structure=np.ones((3, 3)))[1])
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        keep = sizes >= self.min_area_fraction * mask.size
        if self.keep_largest and keep.any():
            largest = int(np.argmax(np.where(keep, sizes, -1)))
            keep = np.zeros_like(keep)
            keep[largest] = True
        lut = np.concatenate([[False], keep])
        return lut[labels], int(keep.sum())


def checked_postprocessing(meta: Any) -> Postprocessing:
    """The :class:`Postprocessing` of a segmentation model's ``meta.json``: ``postprocessing``, thresholded at
    ``threshold`` (what the model card and the service report), else at ``postprocessing.threshold``, else 0.5.

    Raises:
        ModelFolderError: If ``postprocessing`` is not a JSON object, its threshold differs from ``threshold`` (one
            of them would be ignored), or a value is out of range; the message names the file and the field.
    """
    from breastdx.models.saved import ModelFolderError

    post = dict(meta.section("postprocessing"))
    given = [t for t in (meta.threshold, post.get("threshold")) if t is not None]
    if len(given) == 2 and given[0] != given[1]:
        raise ModelFolderError(f"{meta.source}: field 'threshold' ({given[0]}) and postprocessing.threshold "
                               f"({given[1]}) differ; a mask has one threshold: make them equal.")
    post["threshold"] = given[0] if given else 0.5
    try:
        return Postprocessing.from_meta(post)
    except (TypeError, ValueError) as e:
        raise ModelFolderError(f"{meta.source}: field 'postprocessing': {e}") from None


@dataclass
class SegmentationOutput:
    """The prediction for one image.

    Attributes:
        mask: Lesion mask at the original size, bool ``(H, W)``.
        prob: Lesion probability at the original size, float32 ``(H, W)`` (None when not kept).
        area_px: Lesion area in pixels.
        area_mm2: Lesion area in mm² when the pixel spacing is known, else None.
        n_components: Connected lesion regions in ``mask``.
        max_prob: Largest lesion probability in the image.
        max_diameter_px: Longest diameter (maximum Feret diameter) of the largest lesion component, in pixels
            (:func:`~breastdx.inference.lesion_size.max_feret_diameter`); 0 without a lesion.
        max_diameter_mm: The same in mm when the pixel spacing is known (measured per axis), else None.
        p_normal: With a presence gate (:mod:`breastdx.inference.presence`), the classifier's P(normal) of the
            image (at or over the gate's threshold the mask is empty); else None.
    """

    mask: np.ndarray
    prob: np.ndarray | None
    area_px: int
    area_mm2: float | None
    n_components: int
    max_prob: float
    max_diameter_px: float = 0.0
    max_diameter_mm: float | None = None
    p_normal: float | None = None


@PREDICTORS.register("segmentation")
class SegmentationPredictor(ImagePredictor):
    """Predict lesion masks with a saved segmentation network.

    Args:
        network: The network, ``(B, C, S, S) -> (B, 2, S, S)`` logits (background, lesion), or None to
            build it from ``model_dir`` when needed (:meth:`from_dir` does so).
        meta: The model folder's ``meta.json`` (a :class:`~breastdx.inference.meta.ModelMeta` or its content).
        **options: ``batch_size`` (16), ``device``, ``dtype``, ``tta``, ``model_dir``, ``backend``, ``onnx_dir``:
            see :class:`~breastdx.inference.base.ImagePredictor`.

    Attributes:
        postprocessing: Threshold (``meta["threshold"]``) and cleaning (``meta["postprocessing"]``), see
            :func:`checked_postprocessing`.
        presence: A :class:`~breastdx.inference.presence.PresenceGate` that empties the mask of an image its
            classifier calls normal, or None (default: the segmenter alone).

    Raises:
        ModelFolderError: If ``meta`` lacks the preprocessing, names an unknown dtype or TTA mode, or its
            postprocessing is invalid (:func:`checked_postprocessing`).
        ValueError: If an option is invalid.
    """

    kind = "segmentation"
    numpy_runner = True

    def __init__(self, network: Any, meta: Any, **options: Any) -> None:
        super().__init__(network, meta, **options)
        self.postprocessing = checked_postprocessing(self.meta)
        self.presence: Any = None

    def _gated(self, outputs: list[SegmentationOutput], images: Sequence[np.ndarray]) -> list[SegmentationOutput]:
        """The outputs after the presence gate (unchanged without one), with each image's P(normal)."""
        if self.presence is None:
            return outputs
        p = self.presence.p_normal(images)
        return [dataclasses.replace(o, p_normal=float(q)) for o, q in zip(self.presence.apply(outputs, p), p)]

    # ------------------------------------------------------------------------------------------ network
    def predict_resized(self, batch: np.ndarray) -> np.ndarray:
        """Lesion probability at network size.

        Shape:
            ``(B, C, S, S)`` float32 in [0, 1] (NumPy; :meth:`Preprocessing.to_array
            <breastdx.data.transforms.Preprocessing.to_array>`) -> ``(B, S, S)`` float32 in [0, 1].
        """
        prob = self._lesion_prob(batch)
        if self.tta == "hflip":
            prob = 0.5 * (prob + self._lesion_prob(batch[..., ::-1])[..., ::-1])
        return prob

    def _lesion_prob(self, batch: np.ndarray) -> np.ndarray:
        """P(lesion) ``(B, S, S)``: the sigmoid of a one-channel output, else the softmax's last class."""
        from scipy.special import expit

        logits = self._logits(batch)
        if logits.shape[1] <= 2:  # softmax of (background, lesion) = sigmoid of their difference
            return expit(logits[:, -1] - logits[:, 0] if logits.shape[1] == 2 else logits[:, 0]).astype(np.float32)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e[:, -1] / e.sum(axis=1)).astype(np.float32)

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        """The network's logits of a NumPy batch, float32 (either runner: ``run_numpy``)."""
        return np.asarray(self.runner.run_numpy(batch), dtype=np.float32)

    # ------------------------------------------------------------------------------------------- images
    def predict_prepared(self, resized: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
                         spacings: Sequence[tuple[float, float] | None] | None = None,
                         keep_prob: bool = True) -> list[SegmentationOutput]:
        """Predict images already resized by :meth:`prepare`.

        Args:
            resized: uint8 ``(S, S)`` (or ``(S, S, 3)``) per image.
            shapes: Original ``(H, W)`` per image.
            spacings: Pixel spacing ``(row, col)`` in mm per image, or None.
            keep_prob: Return the probability maps (else ``prob`` is None, saving memory).

        Returns:
            One :class:`SegmentationOutput` per image, in order.
        """
        spacings = list(spacings) if spacings is not None else [None] * len(resized)
        outputs: list[SegmentationOutput] = []
        for start in range(0, len(resized), self.batch_size):
            chunk = np.stack(resized[start:start + self.batch_size])
            prob_small = self.predict_resized(self.preprocessing.to_array(chunk))
            for k in range(prob_small.shape[0]):
                i = start + k
                prob = restore_size(prob_small[k], tuple(shapes[i]))
                mask, n_comp = self.postprocessing.apply(prob)
                area = int(mask.sum())
                sp = spacings[i]
                diameter_px, diameter_mm = max_feret_diameter(mask, sp)
                outputs.append(SegmentationOutput(
                    mask=mask, prob=prob if keep_prob else None, area_px=area,
                    area_mm2=float(area * sp[0] * sp[1]) if sp is not None else None,
                    n_components=n_comp, max_prob=float(prob.max()), max_diameter_px=diameter_px,
                    max_diameter_mm=diameter_mm))
        return outputs

    def predict(self, images: Sequence[np.ndarray], spacings: Sequence[tuple[float, float] | None] | None = None,
                keep_prob: bool = True) -> list[SegmentationOutput]:
        """Predict lesion masks at the original size of each image.

        Args:
            images: uint8 ``(H, W)`` (gray models) or ``(H, W, 3)`` (RGB models), any sizes.
            spacings: Pixel spacing ``(row, col)`` in mm per image (None where unknown), or None.
            keep_prob: Return the probability maps.

        Returns:
            One :class:`SegmentationOutput` per image, in order.

        Raises:
            ValueError: If an image is not uint8 of the expected layout.
        """
        resized = [self.prepare(im) for im in images]
        return self._gated(self.predict_prepared(resized, [im.shape[:2] for im in images], spacings, keep_prob),
                           images)

    def predict_batch(self, records: Sequence[Any], prepared: Sequence[np.ndarray],
                      keep_prob: bool = False) -> list[SegmentationOutput]:
        """:meth:`predict_prepared` for images read by :meth:`predict_files` (``keep_prob`` off by default)."""
        outputs = self.predict_prepared(prepared, [r.shape for r in records], [r.spacing_mm for r in records],
                                        keep_prob)
        return self._gated(outputs, [r.array for r in records])
