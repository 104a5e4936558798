"""Classification predictor: rebuild a classifier from its model folder alone; class probabilities and Grad-CAM.

A classification model folder holds ``model.safetensors`` (the state dict), ``meta.json`` and
``MODEL_CARD.md``. ``meta.json`` gives the network (``architecture``, ``architecture_args``,
``in_channels``, ``class_names``), the preprocessing (:class:`breastdx.data.transforms.Preprocessing`,
plus ``source_size`` for models trained on small images such as BreastMNIST's 28 x 28), the temperature
fitted on validation (``temperature``), the operating threshold on P(positive class) (``threshold``),
test-time augmentation (``inference.tta``) and the Grad-CAM method and layer (``gradcam``). Weights are
read with ``safetensors``; nothing is unpickled.

Pipeline per image ``(H, W)``: (its central square, ``source_crop``), (resize to ``source_size``), resize to
``(S, S)``, network, optional mean
with the logits of the left-right mirror, ``softmax(logits / T)``, label at the operating point
(:func:`breastdx.evaluation.classification.operating_labels`: the positive class when its probability
reaches the threshold, else the most probable other class). Grad-CAM maps explain the reported label and
are upsampled from the feature map straight to ``(H, W)`` (to the central square's place with ``source_crop``).

Speed: with Grad-CAM, the backward pass stops at the target layer (``fast_backward`` of
:class:`breastdx.explain.cam.CamExplainer`), so a batch costs little more than a forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from breastdx.data.stain import load_stain_normalizer  # noqa: F401  (the name callers import from here)
from breastdx.inference.base import PREDICTORS, TTA_MODES, WEIGHTS_FILE, ImagePredictor, save_weights  # noqa: F401
from breastdx.inference.meta import ModelMeta
from breastdx.models.saved import ModelFolderError

log = logging.getLogger(__name__)


@dataclass
class ClassificationOutput:
    """The prediction for one image.

    Attributes:
        prob: Class probabilities after temperature scaling, float64 ``(K,)``.
        label: Class name at the operating point.
        label_index: Its index.
        argmax_label: The most probable class (may differ from ``label`` at a sensitivity-oriented threshold).
        cam: Grad-CAM map of ``label`` at the original size, float32 ``(H, W)`` in [0, 1], or None.
        prediction_set: The conformal prediction set (class names in class order; :mod:`breastdx.evaluation.
            conformal`), or None when the model folder has no conformal record.
        ood_distance: Cosine distance of the image's penultimate features to the k-th nearest training image
            (:mod:`breastdx.inference.ood`; float in [0, 2]), or None when the model folder has no ``ood`` record.
        ood_note: Why that distance puts the image out of scope (over the record's threshold), else empty.
    """

    prob: np.ndarray
    label: str
    label_index: int
    argmax_label: str
    cam: np.ndarray | None = None
    prediction_set: list[str] | None = None
    ood_distance: float | None = None
    ood_note: str = ""


def save_classifier(model_dir: Path, network: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.safetensors`` and ``meta.json`` (completed by :func:`breastdx.models.saved.write_meta`).

    Args:
        model_dir: The folder (created when missing).
        network: The trained network.
        meta: Metadata; ``weights_file`` is set here.

    Returns:
        The completed metadata.
    """
    from breastdx.models.saved import write_meta

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_weights(network, model_dir / WEIGHTS_FILE)
    return write_meta(model_dir, {**{k: v for k, v in meta.items() if k != "schema_version"},
                                  "kind": "classification",
                                  "weights_file": WEIGHTS_FILE})


@PREDICTORS.register("classification")
class ClassificationPredictor(ImagePredictor):
    """Class probabilities (and Grad-CAM maps) with a saved classifier.

    Args:
        network: The classifier ``(B, C, S, S) -> (B, K)``, or None to build it from ``model_dir``.
        meta: The model folder's ``meta.json`` (a :class:`~breastdx.inference.meta.ModelMeta` or its content).
        batch_size: Images per forward pass.
        gradcam_method: ``"gradcam"`` or ``"gradcampp"``; default ``meta["gradcam"]["method"]``.
        normalizer: Stain normaliser ``uint8 (H, W, 3) -> uint8 (H, W, 3)`` applied before resizing (``from_dir``
            gives the model's Macenko normaliser when ``meta["stain_normalisation"]`` asks for one), or None.
        **options: ``device``, ``dtype``, ``tta``, ``model_dir``, ``backend``, ``onnx_dir``: see
            :class:`~breastdx.inference.base.ImagePredictor`. The backend runs the forward pass without
            Grad-CAM; Grad-CAM always runs PyTorch.

    Attributes:
        positive: The positive class (``meta["positive_class"]``, default the last class).
        temperature: Temperature fitted on validation (``meta["temperature"]``, default 1).
        threshold: Operating threshold on P(positive), or None (most probable class).
        conformal: ``meta["conformal"]`` (:func:`breastdx.evaluation.conformal.fit_conformal`), or None.
        conformal_level: Coverage level of the prediction sets (``conformal_level`` argument, default the
            record's, 0.9), or None without a conformal record.
        ood: The feature-space out-of-distribution scorer (:class:`breastdx.inference.ood.OodScorer`) of a model
            folder whose ``meta.json`` has an ``ood`` record, else None.
        fusion: A lesion-crop model whose probabilities are fused with this model's (:meth:`use_fusion`), or None.

    Raises:
        ModelFolderError: If ``meta`` lacks the preprocessing, names an unknown TTA mode, or its positive
            class is not one of its classes, its ``gradcam`` or ``ood`` field is not a JSON object, or its
            out-of-distribution record or bank cannot be read.
        ValueError: If an option is invalid, or ``conformal_level`` is not a level the model folder stores.
    """

    kind = "classification"

    def __init__(self, network: nn.Module | None, meta: ModelMeta | Mapping[str, Any], *, batch_size: int = 32,
                 gradcam_method: str | None = None, normalizer: Callable[[np.ndarray], np.ndarray] | None = None,
                 conformal_level: float | None = None, **options: Any) -> None:
        super().__init__(network, meta, batch_size=batch_size, **options)
        self.source_size = self.meta["preprocessing"].get("source_size")
        self.source_crop = self.meta["preprocessing"].get("source_crop")
        self.pad_to = self.meta["preprocessing"].get("pad_to")
        self.positive = self.meta.positive_class
        from breastdx.evaluation.classification import positive_columns

        self.positive_columns = positive_columns(self.meta.class_names, self.positive)
        self.temperature = float(self.meta.get("temperature") or 1.0)  # checked > 0 by ModelMeta; null: none fitted
        self.threshold = self.meta.threshold
        gc = self.meta.section("gradcam")
        self.gradcam_method = gradcam_method or gc.get("method", "gradcam")
        self.gradcam_layer = gc.get("layer")
        self.normalizer = normalizer
        self._explainers: dict[str, Any] = {}
        self.conformal = self.meta.get("conformal")
        self.conformal_level: float | None = None
        if self.conformal:
            from breastdx.evaluation.conformal import quantile_for

            self._conformal = quantile_for(self.conformal, conformal_level)
            self.conformal_level = self._conformal[1]
        elif conformal_level is not None:
            raise ValueError(f"{self.meta.source}: the model folder has no conformal record, so it cannot give "
                             f"prediction sets at level {conformal_level}; run 'breastdx calibrate' on it first.")
        self.fusion: Any = None
        self.ood = None
        model_dir = options.get("model_dir")
        if self.meta.get("ood") and model_dir is not None:
            from breastdx.inference.ood import OodScorer

            try:
                self.ood = OodScorer.from_dir(Path(model_dir), dict(self.meta.section("ood")))
            except ValueError as e:
                raise ModelFolderError(f"{self.meta.source}: field 'ood': {e}") from None

    def use_fusion(self, fusion: Any) -> None:
        """Fuse this whole-image model's probabilities with a lesion-crop model's in :meth:`predict` and
        :meth:`predict_batch` (a :class:`breastdx.inference.lesion_crop.LesionFusion`); labels follow the fusion's
        threshold, Grad-CAM maps stay this model's, and no prediction sets are given (they are calibrated for this
        model alone).
        """
        self.fusion, self.threshold, self.conformal, self.conformal_level = fusion, fusion.threshold, None, None

    def _fused(self, images: Sequence[np.ndarray], prob: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.fusion is None:
            return prob, labels
        prob = self.fusion(images, prob)
        return prob, self.labels_from_proba(prob)

    def prediction_sets(self, prob: np.ndarray) -> list[list[str]] | None:
        """The conformal prediction set of each row of temperature-scaled probabilities ``(n, K)``, or None when
        the model folder has no conformal record."""
        if not self.conformal:
            return None
        from breastdx.evaluation.conformal import prediction_sets, set_names

        method, _, qhat = self._conformal
        return set_names(prediction_sets(prob, qhat, method), self.class_names)

    @classmethod
    def from_meta(cls, model_dir: Path, meta: ModelMeta, **options: Any) -> "ClassificationPredictor":
        """Build from a checked model folder, with the stain normaliser it was trained with."""
        return cls(None, meta, normalizer=load_stain_normalizer(model_dir, meta), model_dir=model_dir, **options)

    # --------------------------------------------------------------------------------------- network
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Pad a smaller image with white on the bottom and right to ``pad_to`` when the model's training data were
        padded so (IDC's edge patches), stain-normalise it when the model was trained so, then resize it to the
        network size (through ``source_size`` when the model has one).

        Raises:
            ValueError: If the image is not uint8 of the layout the model expects.
        """
        from breastdx.data.classification import resize_for_network

        if image.ndim == 3 and self._padded(image.shape):
            padded = np.full((*self.pad_to, image.shape[2]), 255, dtype=np.uint8)
            padded[:image.shape[0], :image.shape[1]] = image
            image = padded
        if self.normalizer is not None:
            image = self.normalizer(image)
        return resize_for_network(image, self.preprocessing, self.source_size, self.source_crop)

    def _padded(self, shape: Sequence[int]) -> bool:
        """Whether an image of ``shape`` is padded to ``pad_to`` before resizing (smaller on a side, not equal)."""
        return (self.pad_to is not None and shape[0] <= self.pad_to[0] and shape[1] <= self.pad_to[1]
                and tuple(shape[:2]) != tuple(self.pad_to))

    def _to_input(self, resized: Sequence[np.ndarray]) -> torch.Tensor:
        return self.preprocessing.to_tensor(np.stack(resized)).to(self.device)

    def logits_of_input(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (mean with the mirror's for ``hflip``) of a network input ``(B, C, S, S)`` -> ``(B, K)``."""
        z = self.runner(x)
        if self.tta == "hflip":
            z = 0.5 * (z + self.runner(x.flip(-1)))
        return z

    def ood_distances(self, x: torch.Tensor) -> np.ndarray | None:
        """Feature-space out-of-distribution distances of a network input ``(B, C, S, S)`` (one float32 PyTorch
        forward pass, without test-time augmentation), float64 ``(B,)``; None without an ``ood`` record."""
        if self.ood is None:
            return None
        from breastdx.models.penultimate import FeatureTap

        with torch.no_grad(), FeatureTap(self.network) as tap:
            self.network(x)
        return self.ood.distances(tap.features().numpy())

    def proba_from_logits(self, logits: np.ndarray | torch.Tensor) -> np.ndarray:
        """``softmax(logits / T)`` with the model's temperature, float64 ``(n, K)``."""
        from breastdx.evaluation.calibration import softmax

        return softmax(np.asarray(torch.as_tensor(logits).cpu(), dtype=np.float64), self.temperature)

    def labels_from_proba(self, prob: np.ndarray) -> np.ndarray:
        """Class index per image at the operating point (argmax when the model has no threshold)."""
        from breastdx.evaluation.classification import operating_labels

        p = np.asarray(prob, dtype=float)
        if self.threshold is None:
            return p.argmax(axis=1)
        return operating_labels(p, self.positive_columns, float(self.threshold))

    def predict_logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Logits of uint8 images of any size, float64 ``(n, K)`` (before temperature scaling)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            resized = [self.prepare(im) for im in images[start:start + self.batch_size]]
            out.append(self.logits_of_input(self._to_input(resized)).cpu())
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, len(self.class_names)))

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities of uint8 images of any size, float64 ``(n, K)``, rows summing to 1."""
        return self.proba_from_logits(self.predict_logits(images))

    # --------------------------------------------------------------------------------------- Grad-CAM
    def explainer(self, method: str | None = None):
        """The :class:`breastdx.explain.cam.CamExplainer` of ``method`` (made once, fast backward)."""
        from breastdx.explain.cam import CamExplainer

        method = method or self.gradcam_method
        if method not in self._explainers:
            self._explainers[method] = CamExplainer(self.network, self.meta["architecture"], method=method,
                                                    layer=self.gradcam_layer, fast_backward=True)
        return self._explainers[method]

    def explain_prepared(self, resized: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
                         method: str | None = None, class_idx: Any = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Probabilities, labels and Grad-CAM maps of resized images, in one forward and one short backward.

        Args:
            resized: uint8 network-size images (from :meth:`prepare`).
            shapes: Original ``(H, W)`` per image (the maps' sizes).
            method: ``"gradcam"`` or ``"gradcampp"``; default the model's.
            class_idx: Class to explain: None for the label at the operating point, an int for one class
                for every image, or one index per image (array-like ``(n,)``).

        Returns:
            ``(prob (n, K), label index (n,), maps)``: maps float32 ``(H, W)`` in [0, 1], explaining
            ``class_idx`` (or the label).
        """
        return self._explain_prepared(resized, shapes, method, class_idx)[:3]

    def _explain_prepared(self, resized: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]],
                          method: str | None = None, class_idx: Any = None) -> tuple[Any, ...]:
        """:meth:`explain_prepared` plus the out-of-distribution distances ``(n,)`` (None without a record), taken
        from the features of Grad-CAM's forward pass: no second pass."""
        from contextlib import nullcontext

        from breastdx.models.penultimate import FeatureTap

        x = self._to_input(resized)
        flip = None
        if self.tta == "hflip":  # the mirror needs no gradient: the faster backend (logits agree within 1e-3)
            flip = self.runner(x.flip(-1))
        chosen: dict[str, Any] = {}

        def choose(logits: torch.Tensor) -> torch.Tensor:
            z = logits.float() if flip is None else 0.5 * (logits.float() + flip)
            prob = self.proba_from_logits(z)
            labels = self.labels_from_proba(prob)
            chosen["prob"], chosen["labels"] = prob, labels
            if class_idx is None:
                return torch.as_tensor(labels, device=logits.device)
            if np.ndim(class_idx) == 0:
                return torch.full((logits.shape[0],), int(class_idx), dtype=torch.long, device=logits.device)
            return torch.as_tensor(np.asarray(class_idx, dtype=np.int64), device=logits.device)

        with self.runner.autocast(), (FeatureTap(self.network) if self.ood is not None else nullcontext()) as tap:
            _, _, maps = self.explainer(method).raw_maps(x, class_idx=choose)
        ood = None if tap is None else self.ood.distances(tap.features().numpy()[:x.shape[0]])
        maps = maps.float()
        cams = [self._place(maps[i], tuple(shapes[i])) for i in range(maps.shape[0])]
        return chosen["prob"], chosen["labels"], cams, ood

    def _place(self, cam: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
        """A map upsampled to the image ``shape``; with ``source_crop`` to the central square the network saw, the
        rest of the image 0; for an image padded to ``pad_to`` (IDC's edge patches), upsampled to the padded square
        and cropped to the image, as the network saw it (not stretched over the image with the padding's part)."""
        from breastdx.data.transforms import central_square_box
        from breastdx.explain.gradcam import upsample_map

        if self._padded(shape):
            return np.ascontiguousarray(upsample_map(cam, tuple(self.pad_to))[:shape[0], :shape[1]])
        if self.source_crop is None:
            return upsample_map(cam, shape)
        top, left, side = central_square_box(shape)
        out = np.zeros(shape[:2], dtype=np.float32)
        out[top:top + side, left:left + side] = upsample_map(cam, (side, side))
        return out

    def explain(self, images: Sequence[np.ndarray], method: str | None = None,
                class_idx: Any = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """:meth:`explain_prepared` for uint8 images of any size, batch by batch."""
        return self._explain(images, method, class_idx)[:3]

    def _explain(self, images: Sequence[np.ndarray], method: str | None = None, class_idx: Any = None) -> tuple[Any, ...]:
        """:meth:`explain` plus the out-of-distribution distances (None without a record)."""
        probs, labels, cams, dists = [], [], [], []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            idx = class_idx if class_idx is None or np.ndim(class_idx) == 0 else \
                np.asarray(class_idx)[start:start + self.batch_size]
            p, lab, c, d = self._explain_prepared([self.prepare(im) for im in chunk], [im.shape[:2] for im in chunk],
                                                  method, idx)
            probs.append(p)
            labels.append(lab)
            cams.extend(c)
            dists.append(d)
        ood = None if self.ood is None else (np.concatenate(dists) if dists else np.zeros(0))
        if not probs:
            return np.zeros((0, len(self.class_names))), np.zeros(0, dtype=np.int64), [], ood
        return np.concatenate(probs), np.concatenate(labels), cams, ood

    def _outputs(self, prob: np.ndarray, labels: np.ndarray, cams: list[np.ndarray] | None,
                 ood: np.ndarray | None = None) -> list[ClassificationOutput]:
        sets = self.prediction_sets(prob)
        return [ClassificationOutput(prob=prob[i], label=self.class_names[int(labels[i])], label_index=int(labels[i]),
                                     argmax_label=self.class_names[int(prob[i].argmax())],
                                     cam=None if cams is None else cams[i],
                                     prediction_set=None if sets is None else sets[i],
                                     ood_distance=None if ood is None else float(ood[i]),
                                     ood_note="" if ood is None else self.ood.note(float(ood[i])))
                for i in range(prob.shape[0])]

    def predict(self, images: Sequence[np.ndarray], gradcam: bool = False) -> list[ClassificationOutput]:
        """Predict uint8 images of any size.

        Args:
            images: uint8 ``(H, W)`` (gray models) or ``(H, W, 3)`` (RGB models).
            gradcam: Add the Grad-CAM map of each reported label.

        Returns:
            One :class:`ClassificationOutput` per image, in order.
        """
        if gradcam:
            prob, labels, cams, ood = self._explain(images)
            return self._outputs(*self._fused(images, prob, labels), cams, ood)
        if self.ood is None:
            prob = self.predict_proba(images)
            return self._outputs(*self._fused(images, prob, self.labels_from_proba(prob)), None)
        outputs = []
        for start in range(0, len(images), self.batch_size):  # each batch prepared once, for logits and features
            chunk = images[start:start + self.batch_size]
            x = self._to_input([self.prepare(im) for im in chunk])
            prob = self.proba_from_logits(self.logits_of_input(x))
            outputs.extend(self._outputs(*self._fused(chunk, prob, self.labels_from_proba(prob)), None,
                                         self.ood_distances(x)))
        return outputs

    def predict_batch(self, records: Sequence[Any], prepared: Sequence[np.ndarray],
                      gradcam: bool = True) -> list[ClassificationOutput]:
        """Outputs for images read by :meth:`predict_files`; with ``gradcam`` (default), the map of each label."""
        originals = [r.array for r in records] if self.fusion is not None else []
        if gradcam:
            prob, labels, cams, ood = self._explain_prepared(prepared, [r.shape for r in records])
            return self._outputs(*self._fused(originals, prob, labels), cams, ood)
        x = self._to_input(prepared)
        prob = self.proba_from_logits(self.logits_of_input(x))
        return self._outputs(*self._fused(originals, prob, self.labels_from_proba(prob)), None, self.ood_distances(x))
