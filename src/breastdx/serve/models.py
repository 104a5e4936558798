"""The models the service answers with: found and loaded once at start-up, one per task, and run on one input.

A :class:`ModelRegistry` loads every shipped model (:func:`breastdx.zoo.shipped_models`) or the model
folders it is given, checks each by running it once on a blank input, and keeps the ones that work by task.
A model that fails to load is left out and listed with its reason; the service starts with the others.

Tasks and what they take:

* ``wdbc`` (tabular): the 30 WDBC features as JSON; answers P(malignant), the label at the operating
  threshold and the largest SHAP contributions.
* ``busi-seg`` (segmentation): an image; answers the lesion mask, its contour and its area (mm² when the
  DICOM pixel spacing is known).
* every image classifier (``busi-cls``, ``breastmnist``, ``pcam``, ``idc``, ``breakhis``, ...): an image;
  answers class probabilities, the label at the operating point and the Grad-CAM map of that label.
* ``ultrasound``: one image through ``busi-seg`` and ``busi-cls`` (whichever of them is served).
* ``monuseg`` (nucleus instances): an H&E tile at 40x; answers the nuclei's outlines, their count and the 30
  morphometry columns under the cytology names (:mod:`breastdx.serve.nuclei`).

A model folder is loaded by the predictor of its kind (:func:`breastdx.inference.base.load_predictor`), so
any folder a breastdx task writes is served; answers use the fields of :mod:`breastdx.inference.records`.
Uploads are read by :mod:`breastdx.serve.inputs`, in memory.

Each model has a lock: Grad-CAM keeps per-call state in hooks on the network, so a network runs one
request at a time; different models run in parallel.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from breastdx import RESEARCH_USE_ONLY
from breastdx.inference.meta import ModelMeta
from breastdx.inference.records import classification_record, json_answer, segmentation_record
from breastdx.serve.inputs import IMAGE_FORMATS, ServeInputError, read_upload
from breastdx.visualize import (PREDICTION_COLOR, contour_rgba, display_size, heatmap_overlay, heatmap_rgba,
                                overlay_contours, png_data_url, resize_image, resize_map, to_gray, to_rgb)

log = logging.getLogger(__name__)

ULTRASOUND_TASK = "ultrasound"
"""The combined endpoint: segmentation and classification of one ultrasound image."""

ULTRASOUND_PARTS = ("busi-seg", "busi-cls")
"""The tasks the ultrasound endpoint runs, in order."""

NOT_SERVED_KINDS = {"generator": "a generator of synthetic H&E patches for research on augmentation ('breastdx "
                                  "synthesize'), not a model that predicts: the service does not serve it"}
"""Kinds of model folder the zoo ships that answer no prediction, and why (listed as left out, logged as info)."""


class NotServedError(Exception):
    """A model folder left out on purpose: of a kind the service does not serve (:data:`NOT_SERVED_KINDS`), or a
    second model of a task already served."""


NUCLEI_KIND = "nucleus_instances"
"""The kind of the ``monuseg`` model folder (:class:`breastdx.inference.nuclei.NucleusPredictor`)."""

DECODE_MAX_SIDE = 2048
"""Longest side an upload is decoded to, in pixels (a larger image is decoded reduced, by an integer factor): the
networks take 256 px or less and answers show at most the display size, so a 6000 x 6000 PNG costs the memory
of a 2000 x 2000 one. Areas are given in the stored image's pixels all the same."""

GRADCAM_LAYER_MAX_SIDE = 160
"""Longer side of the Grad-CAM layer in answers, in pixels. Grad-CAM maps are upsampled from the network's
last feature map (8 x 8 to 16 x 16 cells), so a small layer stretched over the image looks the same as a full
one, and costs a tenth of the encoding time."""


# ------------------------------------------------------------------------------------------------ loading


def weights_version(model_dir: Path, meta: ModelMeta) -> str:
    """The model's version: ``meta["version"]`` when given, else the first 12 hex digits of the weights' SHA-256."""
    if meta.get("version"):
        return str(meta["version"])
    from breastdx.data.checksum import sha256_file

    return sha256_file(model_dir / meta.weights_file)[:12]


@dataclass
class LoadedModel:
    """A model ready to answer.

    Attributes:
        name: Its name (the zoo folder's name).
        version: ``meta["version"]`` or the start of the weights' SHA-256.
        model_dir: Its folder.
        card: ``MODEL_CARD.md`` (empty when missing).
        predictor: The predictor of the folder's kind (:func:`breastdx.inference.base.load_predictor`):
            :class:`~breastdx.inference.tabular.WDBCPredictor`,
            :class:`~breastdx.inference.predictor.SegmentationPredictor`,
            :class:`~breastdx.inference.classifier.ClassificationPredictor` or
            :class:`~breastdx.inference.nuclei.NucleusPredictor`.
        lock: Held while the model runs.
    """

    name: str
    version: str
    model_dir: Path
    card: str
    predictor: Any
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def meta(self) -> ModelMeta:
        """The checked ``meta.json``."""
        return self.predictor.meta

    @property
    def task(self) -> str:
        """The task the model was trained for."""
        return self.meta.task

    @property
    def kind(self) -> str:
        """``"tabular"``, ``"segmentation"``, ``"classification"`` or ``"nucleus_instances"`` (the folder's kind)."""
        return self.meta.kind

    @property
    def ref(self) -> dict[str, str]:
        """``{"name", "version"}``."""
        return {"name": self.name, "version": self.version}

    @property
    def image_mode(self) -> str:
        """``"gray"`` or ``"rgb"``: how an image model reads its input (H&E tiles of the nucleus model: ``rgb``)."""
        if self.kind == NUCLEI_KIND:
            return "rgb"
        return str(self.meta.get("preprocessing", {}).get("mode", "gray")) if self.kind != "tabular" else "gray"

    def describe(self) -> dict[str, Any]:
        """The model as listed by ``GET /v1/models``: metadata, metrics, model card and what input it takes."""
        meta = self.meta
        info: dict[str, Any] = {
            "name": self.name, "task": self.task, "kind": self.kind, "version": self.version,
            "architecture": meta.get("architecture"), "title": meta.get("title"),
            "class_names": list(meta.class_names), "positive_class": meta.positive_class,
            "threshold": meta.get("threshold"), "threshold_rule": meta.get("threshold_rule"),
            "temperature": meta.get("temperature"),
            "metrics": meta.get("metrics", {}), "metrics_split": meta.get("metrics_split"),
            "created": meta.get("created"), "intended_use": meta.get("intended_use", RESEARCH_USE_ONLY),
            "model_card": self.card,
        }
        if self.kind == "tabular":
            from breastdx.data.wdbc import FEATURE_NAMES, FEATURE_UNITS

            example = np.asarray(self.predictor.background[0], dtype=float)
            info["input"] = {"type": "features", "features": list(FEATURE_NAMES),
                             "units": dict(meta.get("feature_units", FEATURE_UNITS)),
                             "example": {n: float(v) for n, v in zip(FEATURE_NAMES, example)}}
        elif self.kind == NUCLEI_KIND:
            from breastdx.serve.nuclei import NUCLEI_MAX_PIXELS

            info["input"] = {"type": "image", "formats": list(IMAGE_FORMATS), "mode": "rgb",
                             "network_size": self.predictor.windows.roi_size, "max_pixels": NUCLEI_MAX_PIXELS,
                             "microns_per_pixel": meta.get("microns_per_pixel")}
        else:
            prep = meta.get("preprocessing", {})
            info["input"] = {"type": "image", "formats": list(IMAGE_FORMATS), "mode": self.image_mode,
                             "network_size": prep.get("image_size")}
        return info


def model_name(model_dir: Path, meta: ModelMeta) -> str:
    """``meta["name"]``, else the folder's name (its parent's for a run folder's ``model/``)."""
    if meta.get("name"):
        return str(meta["name"])
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


def load_model(model_dir: str | Path, name: str | None = None, dtype: str = "auto",
               backend: str = "auto", lesion_aware: bool = False) -> LoadedModel:
    """Load one model folder for serving.

    Args:
        model_dir: Folder with ``meta.json``, the weights and (optionally) ``MODEL_CARD.md``.
        name: Its name; default :func:`model_name`.
        dtype: Network precision (``auto``, ``float32``, ``bfloat16``; see :mod:`breastdx.runtime`).
        backend: Forward-pass backend (``auto``, ``torch``, ``onnxruntime``).
        lesion_aware: For a classifier whose folder holds a lesion-crop model (``lesion_crop/``, the shipped
            busi-cls), fuse the two as ``predict --lesion-aware true`` does
            (:class:`breastdx.inference.lesion_crop.LesionFusion`); the version then names both weights
            (``<whole>+lesion_crop.<crop>``). Other models are loaded as they are.

    Returns:
        The :class:`LoadedModel`.

    Raises:
        NotServedError: If the folder holds a kind of model that predicts nothing (:data:`NOT_SERVED_KINDS`).
        ModelFolderError: If the folder is not a valid model folder of a kind this service runs.
    """
    from breastdx.inference.base import load_predictor
    from breastdx.models.saved import CARD_FILE, ModelFolderError, load_meta_json

    model_dir = Path(model_dir)
    _, raw = load_meta_json(model_dir)
    if isinstance(raw, dict) and raw.get("kind") in NOT_SERVED_KINDS:
        raise NotServedError(NOT_SERVED_KINDS[raw["kind"]])
    predictor = load_predictor(model_dir, batch_size=1, dtype=dtype, backend=backend)
    version = weights_version(model_dir, predictor.meta)
    if lesion_aware and predictor.meta.kind == "classification":
        from breastdx.inference.lesion_crop import LESION_MODEL_FOLDER, LesionFusion

        try:
            fusion = LesionFusion.for_whole_model(predictor, model_dir, batch_size=1, dtype=dtype, backend=backend)
        except ValueError as e:
            raise ModelFolderError(str(e)) from None
        if fusion is not None:
            predictor.use_fusion(fusion)
            crop_version = weights_version(model_dir / LESION_MODEL_FOLDER, fusion.crop_model.meta)
            version = f"{version}+lesion_crop.{crop_version}"
    card_path = model_dir / CARD_FILE
    card = card_path.read_text(encoding="utf-8", errors="replace") if card_path.is_file() else ""
    return LoadedModel(name or model_name(model_dir, predictor.meta), version, model_dir, card, predictor)


def warm_up(model: LoadedModel, gradcam: bool = True) -> None:
    """Run a model once on a blank input (builds lazy state such as the Grad-CAM hooks, and checks it runs).

    Raises:
        Exception: Whatever the model raises; the registry leaves such a model out.
    """
    with model.lock:
        if model.kind == "tabular":
            model.predictor.predict_records(np.asarray(model.predictor.background[:1], dtype=float), n_reasons=1)
            return
        shape = (64, 64) if model.image_mode == "gray" else (64, 64, 3)
        blank = np.zeros(shape, dtype=np.uint8)
        if model.kind == NUCLEI_KIND:
            model.predictor.predict(blank)
        elif model.kind == "segmentation":
            model.predictor.predict([blank], keep_prob=False)
        else:
            model.predictor.predict([blank], gradcam=gradcam)


class ModelRegistry:
    """The served models, one per task.

    Args:
        models: Task to loaded model.
        unavailable: ``(model name or folder, reason)`` for every model left out.
        by_design: The names among them left out on purpose (a generator, a second model of a served task), not
            because they failed.
    """

    def __init__(self, models: dict[str, LoadedModel], unavailable: list[tuple[str, str]] | None = None,
                 by_design: set[str] | None = None) -> None:
        self.models = dict(models)
        self.unavailable = list(unavailable or [])
        self.by_design = set(by_design or ())

    @classmethod
    def load(cls, model_dirs: Iterable[str | Path] | None = None, *, warmup: bool = True,
             gradcam: bool = True, dtype: str = "auto", backend: str = "auto",
             lesion_aware: bool = False) -> "ModelRegistry":
        """Load the shipped models (``model_dirs=None``) or the given folders; leave out the ones that fail.

        When two folders hold models of the same task, the first one (in name order for the zoo) is served.

        Args:
            model_dirs: Model folders (a training run's folder stands for its ``model/``), or None for
                :func:`breastdx.zoo.shipped_models`.
            warmup: Run each model once (:func:`warm_up`); a model that fails is left out.
            gradcam: Warm classifiers up with Grad-CAM.
            dtype: Network precision of every model (see :func:`breastdx.runtime.choose_inference_dtype`).
            backend: Forward-pass backend of every model.
            lesion_aware: Serve a classifier that has a lesion-crop model fused with it (see :func:`load_model`).
        """
        from breastdx.models.saved import ModelFolderError

        if model_dirs is None:
            from breastdx.zoo import shipped_models

            candidates = [(name, path) for name, path in shipped_models().items()]
        else:
            from breastdx.zoo import model_folder

            candidates = [(None, model_folder(p)) for p in model_dirs]  # a run folder stands for its model/
        models: dict[str, LoadedModel] = {}
        unavailable: list[tuple[str, str]] = []
        by_design: set[str] = set()
        for name, path in candidates:
            label = name or str(path)
            start = time.perf_counter()
            try:
                model = load_model(path, name, dtype, backend, lesion_aware)
                if model.task in models:
                    raise NotServedError(f"a model for task {model.task!r} is already served "
                                         f"({models[model.task].name}); only one model per task is served")
                if warmup:
                    warm_up(model, gradcam)
            except NotServedError as e:
                log.info("model %s left out: %s", label, e)
                unavailable.append((label, str(e)))
                by_design.add(label)
                continue
            except ModelFolderError as e:
                log.warning("model %s left out: %s", label, e)
                unavailable.append((label, str(e)))
                continue
            except Exception as e:  # noqa: BLE001 - a broken model must not stop the service
                log.exception("model %s left out: it failed to load or run", label)
                unavailable.append((label, f"failed to load or run: {type(e).__name__}: {e}"))
                continue
            models[model.task] = model
            log.info("serving %s (task %s, version %s), ready in %.1f s", model.name, model.task, model.version,
                     time.perf_counter() - start)
        return cls(models, unavailable, by_design)

    def tasks(self) -> list[str]:
        """The tasks answered: every loaded model's task, and ``ultrasound`` when a part of it is loaded."""
        tasks = sorted(self.models)
        if any(t in self.models for t in ULTRASOUND_PARTS):
            tasks.append(ULTRASOUND_TASK)
        return tasks

    def get(self, task: str) -> list[LoadedModel]:
        """The models that answer ``task`` (two for ``ultrasound`` when both parts are loaded).

        Raises:
            ServeInputError: 404 when no served model answers ``task``; the message names the served tasks
                and, for a misspelt task, the closest known one.
        """
        if task == ULTRASOUND_TASK:
            found = [self.models[t] for t in ULTRASOUND_PARTS if t in self.models]
        else:
            found = [self.models[task]] if task in self.models else []
        if found:
            return found
        served = ", ".join(self.tasks()) or "(none)"
        from breastdx.tasks import TASKS

        known = sorted(set(TASKS.names()) | {ULTRASOUND_TASK})
        if task in known:
            needs = " or ".join(ULTRASOUND_PARTS) if task == ULTRASOUND_TASK else task
            message = (f"Task {task!r} is not served: no {needs} model is shipped in this installation (or it failed "
                       f"to load; see GET /v1/models). Served tasks: {served}.")
            return self._missing(message, "model_not_available")
        close = difflib.get_close_matches(task, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self._missing(f"Unknown task {task!r}.{hint} Served tasks: {served}.", "unknown_task")
        return []  # pragma: no cover - _missing raises

    @staticmethod
    def _missing(message: str, code: str) -> list[LoadedModel]:
        raise ServeInputError(404, code, message)


# ------------------------------------------------------------------------------------------------ running


def _segment(model: LoadedModel, image: np.ndarray, spacing: tuple[float, float] | None,
             disp_image: np.ndarray, composites: bool, area_scale: float = 1.0) -> dict[str, Any]:
    with model.lock:
        out = model.predictor.predict([image], spacings=[spacing], keep_prob=False)[0]
    record = segmentation_record(out)
    record["lesion_area_px"] = int(round(record["lesion_area_px"] * area_scale))  # in the stored image's pixels
    record["lesion_max_diameter_px"] = round(record["lesion_max_diameter_px"] * area_scale ** 0.5, 2)
    size = disp_image.shape[:2]
    mask_disp = resize_image(out.mask.astype(np.uint8) * 255, size, Image.NEAREST) > 127
    return {
        "model": model.ref,
        "threshold": float(model.predictor.postprocessing.threshold),
        **json_answer(record),
        "mask_png": png_data_url(mask_disp.astype(np.uint8) * 255),
        "contour_overlay_png": png_data_url(contour_rgba(mask_disp)),
        "contour_composite_png": png_data_url(overlay_contours(disp_image, [mask_disp], [PREDICTION_COLOR]))
        if composites else None,
    }


def _classify(model: LoadedModel, image: np.ndarray, disp_image: np.ndarray, gradcam: bool,
              composites: bool) -> dict[str, Any]:
    predictor = model.predictor
    with model.lock:
        out = predictor.predict([image], gradcam=gradcam)[0]
    names = list(predictor.class_names)
    result: dict[str, Any] = {
        "model": model.ref,
        "class_names": names,
        **json_answer(classification_record(out.prob, names, out.label, predictor.threshold, out.prediction_set,
                                            predictor.conformal_level)),
        "positive_class": predictor.positive,
        "temperature": float(predictor.temperature),
        "ood_distance": None if out.ood_distance is None else round(float(out.ood_distance), 4),
        "_ood_note": out.ood_note,
        "gradcam_method": predictor.gradcam_method if gradcam else None,
        "gradcam_overlay_png": None,
        "gradcam_composite_png": None,
        "lesion_aware": getattr(predictor, "fusion", None) is not None,
    }
    if out.cam is not None:
        small = display_size(disp_image.shape[:2], GRADCAM_LAYER_MAX_SIDE)
        result["gradcam_overlay_png"] = png_data_url(heatmap_rgba(resize_map(out.cam, small)))
        if composites:
            result["gradcam_composite_png"] = png_data_url(
                heatmap_overlay(disp_image, resize_map(out.cam, disp_image.shape[:2])))
    return result


def _scope(record: Any, models: Sequence[LoadedModel]) -> dict[str, Any]:
    """``in_scope`` and ``scope_note`` of an upload: out of scope when any served model's check flags it."""
    from breastdx.inference.scope import check_scope

    checks = [check_scope(record, m.predictor) for m in models if hasattr(m.predictor, "preprocessing")]
    notes = list(dict.fromkeys(c.note for c in checks if not c.in_scope))
    return {"in_scope": not notes, "scope_note": "; ".join(notes)}


def predict_image(models: Sequence[LoadedModel], data: bytes, filename: str, *, max_pixels: int,
                  display_max_side: int, gradcam: bool = True, composites: bool = False,
                  decoder: Any = None, frame: int | None = None) -> dict[str, Any]:
    """Decode one uploaded image and run segmentation and/or classification models on it.

    Args:
        models: Image models (at most one segmentation and one classification model).
        data: The uploaded bytes.
        filename: The client's file name (messages and the answer only).
        max_pixels: Largest accepted image.
        display_max_side: Largest side of the images in the answer.
        gradcam: Compute Grad-CAM maps for classifiers.
        composites: Also answer the overlays already blended into the image (``*_composite_png``).
        decoder: The :class:`breastdx.data.decode_worker.DecoderPool` that decodes the upload (time and
            memory limits), or None to decode in this process.
        frame: The frame of a multi-frame DICOM to read (1-based), or None for the first.

    Returns:
        ``{"image", "segmentation", "classification", "timings_ms"}``: ``image`` holds the size, format,
        pixel spacing and the image itself as a PNG data URL (``image_png``, scaled to the display size);
        ``segmentation`` (mask, ``contour_overlay_png``, area) and ``classification`` (probabilities, label,
        ``gradcam_overlay_png``) are None when no such model ran. ``image.seen_in_training`` says whether a
        served model was trained on the image (:func:`breastdx.inference.base.seen_in_training`: ``yes``,
        ``near-duplicate``, ``no``; the strongest over the models; None when none keeps training hashes). The overlays are RGBA layers to stretch
        over ``image_png``: the mask and contour have its size; the smooth Grad-CAM layer has the same
        aspect ratio and at most :data:`GRADCAM_LAYER_MAX_SIDE` pixels per side.

    An image with a side over :data:`DECODE_MAX_SIDE` (or ``display_max_side`` when larger) is decoded reduced
    by an integer factor; ``width``, ``height``, ``spacing_mm``, ``lesion_area_px`` and ``lesion_max_diameter_px``
    are still those of the stored image (the area counted on the reduced mask times the factor squared, the
    diameter times the factor).

    Raises:
        ServeInputError: For an upload that is not a usable image (see :func:`read_upload`).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    mode = "rgb" if any(m.image_mode == "rgb" for m in models) else "gray"
    record = read_upload(data, filename, mode, max_pixels, decoder, max_side=max(DECODE_MAX_SIDE, display_max_side),
                         frame=frame)
    image = record.array
    height, width = record.full_shape or image.shape[:2]
    scale = (height / image.shape[0], width / image.shape[1])  # stored pixels per decoded pixel, per axis
    spacing = None if record.spacing_mm is None else [float(s / f) for s, f in zip(record.spacing_mm, scale)]
    disp = resize_image(image, display_size(image.shape[:2], display_max_side), Image.BILINEAR)
    timings["decode"] = (time.perf_counter() - t0) * 1000
    answer: dict[str, Any] = {
        "image": {"filename": filename, "width": int(width), "height": int(height),
                  "format": record.source_format, "mode": record.source_mode, "spacing_mm": spacing,
                  "spacing_note": record.spacing_note, "frame": None if record.frame is None else list(record.frame),
                  **_scope(record, models),
                  "display_width": int(disp.shape[1]), "display_height": int(disp.shape[0]),
                  "image_png": png_data_url(disp)},
        "segmentation": None, "classification": None,
    }
    from breastdx.inference.base import seen_in_training

    seen: list[str] = []
    for model in models:
        t = time.perf_counter()
        arr = to_rgb(image) if model.image_mode == "rgb" else to_gray(image)
        seen.append(seen_in_training(model.predictor, arr) or "")
        if model.kind == "segmentation":
            answer["segmentation"] = _segment(model, arr, record.spacing_mm, disp, composites, scale[0] * scale[1])
        elif model.kind == "classification":
            answer["classification"] = _classify(model, arr, disp, gradcam, composites)
        else:  # pragma: no cover - the app routes tabular tasks elsewhere
            raise ServeInputError(415, "wrong_input", f"Task {model.task!r} takes JSON features, not an image.")
        timings[model.kind] = (time.perf_counter() - t) * 1000
    ood_note = (answer["classification"] or {}).pop("_ood_note", "")
    if ood_note:  # the feature-space check runs with the classifier, after the checks of colour and size
        notes = [n for n in (answer["image"]["scope_note"], ood_note) if n]
        answer["image"].update(in_scope=False, scope_note="; ".join(notes))
    answer["image"]["seen_in_training"] = next((v for v in ("yes", "near-duplicate", "no") if v in seen), None)
    answer["timings_ms"] = {k: round(v, 2) for k, v in timings.items()}
    answer["disagreement"] = disagreement(answer["segmentation"], answer["classification"])
    return answer


def disagreement(segmentation: dict[str, Any] | None, classification: dict[str, Any] | None) -> str | None:
    """What the segmenter and the classifier of one image contradict each other on, or None.

    They disagree when the classifier's label is ``normal`` while the segmenter outlines a lesion, or the label is
    another class (a lesion: benign, malignant) while the segmenter finds none. Only for a classifier with a
    ``normal`` class, and only when both ran (the ``ultrasound`` task).
    """
    if not segmentation or not classification or "normal" not in classification.get("class_names", []):
        return None
    label, found = classification["label"], bool(segmentation["lesion_found"])
    if label == "normal" and found:
        return ("The models disagree: the classifier says normal, but the segmenter outlines a lesion "
                f"({segmentation['lesion_area_px']} px). Look at the image and the outline yourself.")
    if label != "normal" and not found:
        return (f"The models disagree: the classifier says {label.replace('_', ' ')}, but the segmenter finds no "
                f"lesion. Look at the image yourself.")
    return None


def predict_features(model: LoadedModel, X: np.ndarray, n_reasons: int) -> dict[str, Any]:
    """Run the WDBC model on one case.

    Args:
        model: The ``wdbc`` model.
        X: Features ``(1, 30)`` from :func:`parse_wdbc_features`.
        n_reasons: SHAP contributions to report (0: none).

    Returns:
        ``{"classification": {"model", "class_names", "probabilities", "label", "label_argmax", "threshold",
        "top_contributions": [{"feature", "value", "input_value"}], "positive_class"}, "timings_ms"}``
        (the fields of :func:`breastdx.inference.records.tabular_record`); ``value`` is the signed SHAP value
        in probability units.
    """
    t = time.perf_counter()
    with model.lock:
        record = model.predictor.predict_records(X, n_reasons=n_reasons)[0]
    if record["top_contributions"] is None:
        record["top_contributions"] = []
    meta = model.predictor.meta
    classification = {"model": model.ref, "class_names": list(meta.class_names), **json_answer(record),
                      "positive_class": meta.positive_class}
    return {"classification": classification, "timings_ms": {"tabular": round((time.perf_counter() - t) * 1000, 2)}}
