"""A lesion-presence decision for a segmenter: no lesion where a classifier calls the image normal.

The BUSI segmenter outlines a "lesion" on many normal images (42% of the normal test images for the shipped
busi-seg). A classifier trained on whole images with a ``normal`` class tells them apart: where its
temperature-scaled P(normal) reaches ``threshold``, the segmenter's mask is emptied. The threshold is chosen on the validation split (both shipped
models share BUSI's grouped split, so the classifier never trained on the segmenter's validation or test
images); ``breastdx evaluate busi-seg --presence-model busi-cls --split val`` (and ``--split test``, ``--external
DIR``) measures it.

Measured on BUSI's grouped test split with the shipped busi-seg and busi-cls (threshold 0.3, chosen on validation):
false lesions on normal images drop from 42% to 11.5%, and lesion Dice from 0.717 to 0.669, since some lesion
images are called normal and lose their mask. On the BrEaST sample from another hospital the classifier calls 42%
of the lesions normal (Dice 0.664 to 0.468), so the gate is an option, never the default.
Cross-validated over 105 normal BUSI images (``benchmarks/busi_seg_cv_presence.py``), the 0.3 threshold leaves
false lesions on 19% [10%, 30%] of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.3
"""P(normal) at or above which the mask is emptied (chosen on BUSI's validation split for busi-cls)."""


@dataclass
class PresenceGate:
    """Empties a segmentation mask where a classifier's P(normal) reaches ``threshold``.

    Args:
        classifier: A :class:`~breastdx.inference.classifier.ClassificationPredictor` with a ``normal`` class,
            taking the same image mode as the segmenter.
        threshold: P(normal) in (0, 1] at or above which the image is taken to hold no lesion.
        normal_class: The class that means "no lesion".
        image_mode: The segmenter's image mode (``"gray"``, ``"rgb"``), which the classifier must take; None to
            leave it unchecked.

    Raises:
        ValueError: If the classifier has no ``normal_class``, takes another image mode, or the threshold is
            outside (0, 1].
    """

    classifier: Any
    threshold: float = DEFAULT_THRESHOLD
    normal_class: str = "normal"
    image_mode: str | None = None

    def __post_init__(self) -> None:
        names = list(self.classifier.class_names)
        if self.normal_class not in names:
            raise ValueError(f"The presence model's classes ({', '.join(names)}) have no {self.normal_class!r} "
                             f"class, so it cannot say that an image holds no lesion.")
        mode = getattr(getattr(self.classifier, "preprocessing", None), "mode", None)
        if self.image_mode is not None and mode is not None and mode != self.image_mode:
            raise ValueError(f"The presence model takes {mode} images, the segmenter {self.image_mode} ones: it was "
                             f"trained on another kind of image (an ultrasound segmenter needs an ultrasound "
                             f"classifier such as busi-cls).")
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"The presence threshold must be in (0, 1], got {self.threshold}.")
        self.index = names.index(self.normal_class)

    def p_normal(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The classifier's P(normal) per uint8 image, float64 ``(n,)``."""
        if not len(images):
            return np.zeros(0)
        return self.classifier.predict_proba(list(images))[:, self.index]

    def apply(self, outputs: Sequence[Any], p_normal: np.ndarray) -> list[Any]:
        """The outputs with the mask emptied (area, components, diameters 0) where ``p_normal >= threshold``;
        the probability map and ``max_prob`` are the segmenter's own."""
        out = []
        for o, p in zip(outputs, p_normal, strict=True):  # one P(normal) per output, none dropped
            if p >= self.threshold and o.area_px:
                o = dataclasses.replace(o, mask=np.zeros_like(o.mask), area_px=0, n_components=0,
                                        area_mm2=None if o.area_mm2 is None else 0.0, max_diameter_px=0.0,
                                        max_diameter_mm=None if o.max_diameter_mm is None else 0.0)
            out.append(o)
        return out


def load_gate(model: str, threshold: float, task: str = "busi-cls", image_mode: str | None = None,
              **options: Any) -> PresenceGate:
    """The gate of a shipped classifier's name or a classifier's model folder, for a segmenter of ``image_mode``.

    Raises:
        FileNotFoundError: If the model is neither.
        ModelFolderError: If the folder is not a usable classifier.
        ValueError: As :class:`PresenceGate`.
    """
    from breastdx.inference.classifier import ClassificationPredictor
    from breastdx.zoo import resolve_model

    model_dir = resolve_model(model, task)
    return PresenceGate(ClassificationPredictor.from_dir(model_dir, **options), float(threshold),
                        image_mode=image_mode)
