"""The predictor base: one way to load a model folder, one read-ahead loop over image files, one registry.

* :class:`Predictor` rebuilds a predictor from its model folder alone (:meth:`Predictor.from_dir`): it reads
  ``meta.json`` into a :class:`~breastdx.inference.meta.ModelMeta`, checks the folder's kind and the keys the
  class needs, and builds the class from the checked metadata.
* :class:`ImagePredictor` adds what image models share: preprocessing, test-time augmentation, the network
  runner (:class:`breastdx.inference.backends.NetworkRunner`), and :meth:`ImagePredictor.predict_files`,
  which reads and resizes the next batch of files in threads while the network runs on this one.
* :data:`PREDICTORS` holds one predictor class per kind of model folder; :func:`load_predictor` picks it.

Weights are safetensors files (:func:`save_weights`, :func:`load_weights`); nothing is ever unpickled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from breastdx.inference.meta import ModelMeta
from breastdx.models.saved import META_FILE, WEIGHTS_FILE, ModelFolderError, load_weights, save_weights  # noqa: F401
from breastdx.registry import Registry

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # torch is imported by the image predictors only: a tabular model loads without it
    import torch
    from torch import nn

TTA_MODES = ("none", "hflip")
"""Test-time augmentations: none, or the mean with the left-right mirror."""

INFERENCE_DTYPES = ("float32", "bfloat16")
"""Network precisions a model folder may list as validated (autocast to ``torch.<name>``)."""

PREDICTORS: Registry[type["Predictor"]] = Registry("model kind")
"""Predictor class per kind of model folder (``"segmentation"``, ``"classification"``, ``"tabular"``,
``"nucleus_instances"``)."""


def as_meta(meta: ModelMeta | Mapping[str, Any]) -> ModelMeta:
    """``meta`` as a :class:`ModelMeta` (a plain mapping is checked by :meth:`ModelMeta.from_dict`).

    Raises:
        ModelFolderError: If a required field is missing or invalid.
    """
    return meta if isinstance(meta, ModelMeta) else ModelMeta.from_dict(meta)


class Predictor:
    """Base of the predictors: a model rebuilt from its folder, with its checked ``meta.json``.

    Subclasses set :attr:`kind` (the registry key), :attr:`required_keys` (``meta.json`` keys beyond the
    common fields) and, when the constructor needs more than ``(None, meta, model_dir=...)``, override
    :meth:`from_meta`.

    Attributes:
        meta: The checked ``meta.json`` (:class:`ModelMeta`, a read-only mapping over the whole file).
    """

    kind: ClassVar[str] = ""
    required_keys: ClassVar[tuple[str, ...]] = ()
    meta: ModelMeta

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, task: str | None = None, **options: Any) -> "Predictor":
        """Rebuild the predictor from a model folder alone.

        Args:
            model_dir: Folder with ``meta.json`` and the weights file it names.
            task: When given, the task the model must belong to (e.g. ``"busi-seg"``).
            **options: Passed to the constructor (image models: ``batch_size``, ``device``, ``dtype``, ``tta``,
                ``backend``, and for classifiers ``gradcam_method``).

        Raises:
            ModelFolderError: If the folder, ``meta.json`` or the weights are missing or do not match, or the
                folder holds another kind of model than this class predicts with.
        """
        return cls.from_checked_dir(Path(model_dir), ModelMeta.read(model_dir, task=task), **options)

    @classmethod
    def from_checked_dir(cls, model_dir: Path, meta: ModelMeta, **options: Any) -> "Predictor":
        """:meth:`from_dir` for a folder whose ``meta.json`` is already read.

        Raises:
            ModelFolderError: If the folder holds another kind of model than this class predicts with, or
                lacks a key this class needs.
        """
        if meta.kind != cls.kind:
            raise ModelFolderError(f"{model_dir / META_FILE}: a {meta.kind} model (task {meta.task!r}), not a "
                                   f"{cls.kind} model; load_predictor() picks the right predictor.")
        meta.require(cls.required_keys, f"a {cls.kind} model")
        return cls.from_meta(model_dir, meta, **options)

    @classmethod
    def from_meta(cls, model_dir: Path, meta: ModelMeta, **options: Any) -> "Predictor":
        """Build from a checked model folder (called by :meth:`from_dir`; the weights file exists)."""
        return cls(None, meta, model_dir=model_dir, **options)  # type: ignore[call-arg]

    @property
    def class_names(self) -> list[str]:
        """Class names in index order."""
        return list(self.meta.class_names)


def checked_preprocessing(meta: ModelMeta) -> Any:
    """The :class:`breastdx.data.transforms.Preprocessing` of an image model's ``meta.json``.

    Raises:
        ModelFolderError: If ``preprocessing`` is not a JSON object, ``image_size`` is not an integer, or a value is
            not supported; the message names the file and the field.
    """
    from breastdx.data.transforms import Preprocessing

    data = meta.section("preprocessing")
    try:
        size = data.get("image_size", Preprocessing.image_size)
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"image_size must be an integer number of pixels, got {size!r}.")
        return Preprocessing.from_meta(dict(data))
    except (TypeError, ValueError) as e:
        raise ModelFolderError(f"{meta.source}: field 'preprocessing': {e}") from None


class ImagePredictor(Predictor):
    """What the image predictors share: preprocessing, test-time augmentation, the network runner and the
    read-ahead :meth:`predict_files`.

    Args:
        network: The network, or None to build it from ``model_dir`` when needed (:meth:`from_dir` does so).
        meta: The model folder's ``meta.json`` (a :class:`ModelMeta` or its content as a mapping).
        batch_size: Images per forward pass (>= 1).
        device: Torch device for the network.
        dtype: ``"auto"`` (default), ``"float32"`` or ``"bfloat16"`` (autocast). ``auto`` runs bfloat16 only where
            the device computes it natively and ``meta["inference"]`` says it was validated; elsewhere float32
            (see :func:`breastdx.runtime.choose_inference_dtype`). The choice is in ``self.dtype`` and its
            reason in ``self.dtype_reason``.
        tta: ``"none"`` or ``"hflip"`` (mean with the left-right mirror); default ``meta["inference"]["tta"]``.
        model_dir: The model folder (for the ONNX Runtime backend and a network built on demand).
        backend: ``"auto"``, ``"torch"`` or ``"onnxruntime"`` (see :class:`breastdx.inference.backends.NetworkRunner`).
        onnx_dir: Folder of cached ONNX graphs (default ``~/.cache/breastdx/onnx``).

    Raises:
        ModelFolderError: If ``meta`` lacks the preprocessing, a field that must be a JSON object
            (``preprocessing``, ``inference``) is not one, or it names an unsupported preprocessing, an unknown dtype
            or TTA mode; the message names the file and the field.
        ValueError: If ``batch_size`` < 1, ``dtype`` is not ``auto``, ``float32`` or ``bfloat16``, or ``backend``
            is unknown.
    """

    required_keys = ("architecture_args", "in_channels", "preprocessing")
    numpy_runner: ClassVar[bool] = False
    """True for a predictor that can run a model folder's cached ONNX graph without PyTorch
    (:func:`breastdx.inference.runners.open_runner`): its code handles both runners."""

    def __init__(self, network: nn.Module | None, meta: ModelMeta | Mapping[str, Any], *, batch_size: int = 16,
                 device: str | torch.device = "cpu", dtype: str | None = "auto", tta: str | None = None,
                 model_dir: Path | None = None, backend: str = "auto", onnx_dir: Path | None = None) -> None:
        from breastdx.runtime import validated_dtypes

        self.meta = as_meta(meta)
        self.meta.require(("preprocessing",), f"a {self.kind} model")
        self.preprocessing = checked_preprocessing(self.meta)
        inference = self.meta.section("inference")
        if not isinstance(inference.get("validated_dtypes", []), list):
            raise ModelFolderError(f"{self.meta.source}: field 'inference': validated_dtypes must be a list of dtype "
                                   f"names. Got {inference['validated_dtypes']!r} instead.")
        unknown = [d for d in validated_dtypes(self.meta) if d not in INFERENCE_DTYPES]
        if unknown:
            raise ModelFolderError(f"{self.meta.source}: unknown inference dtype {unknown[0]!r}; expected one of "
                                   f"{', '.join(INFERENCE_DTYPES)}.")
        self.tta = tta or inference.get("tta", "none")
        if self.tta not in TTA_MODES:
            raise ModelFolderError(f"Unknown test-time augmentation {self.tta!r}; expected one of "
                                   f"{', '.join(TTA_MODES)}.")
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size must be an integer >= 1. Got {batch_size!r} instead.")
        self.batch_size = int(batch_size)
        if self.numpy_runner:  # a cached ONNX graph, without PyTorch, where one can run (see open_runner)
            from breastdx.inference.runners import open_runner

            self.runner = open_runner(self.meta, model_dir, network=network, device=device, dtype=dtype,
                                      backend=backend, onnx_dir=onnx_dir)
        else:
            from breastdx.inference.backends import NetworkRunner

            self.runner = NetworkRunner(self.meta, network=network, model_dir=model_dir, device=device, dtype=dtype,
                                        backend=backend, onnx_dir=onnx_dir)
        self.device = self.runner.device
        self.dtype, self.dtype_reason = self.runner.dtype, self.runner.dtype_reason
        self.backend = self.runner.backend
        from breastdx.models.saved import read_training_index

        # empty / None for a folder without them (older models; H&E models keep no perceptual hashes)
        self.training_hashes, self.training_near = read_training_index(model_dir)

    @property
    def network(self) -> nn.Module:
        """The PyTorch network (built from the model folder on first use under ONNX Runtime)."""
        return self.runner.network

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """One uint8 image at the network size (see :class:`breastdx.data.transforms.Preprocessing`).

        Raises:
            ValueError: If the image is not uint8 of the layout the model expects.
        """
        return self.preprocessing.resize_image(image)

    def predict_batch(self, records: Sequence[Any], prepared: Sequence[np.ndarray], **options: Any) -> list[Any]:
        """Outputs for one batch of images read from files (called by :meth:`predict_files`).

        Args:
            records: :class:`breastdx.data.images.ImageRecord` per image (original size, spacing).
            prepared: The images after :meth:`prepare`.
            **options: The options of :meth:`predict_files`.
        """
        raise NotImplementedError

    def predict_files(self, paths: Iterable[Path], *, workers: int = 2, decode_timeout_s: float | None = None,
                      **options: Any) -> Iterator[tuple[Path, Any, Any, str | None]]:
        """Read, preprocess and predict image files, overlapping file reading with the network.

        Reading and :meth:`prepare` run in ``workers`` threads, one batch ahead of the network; each file is
        decoded in one of ``workers`` worker processes (:class:`breastdx.data.decode_worker.DecoderPool`) under a
        time and memory limit, so that a file that makes a decoder loop or crash is reported as undecodable
        instead of stopping the run. A file that cannot be read is reported, not raised.

        Args:
            paths: Image files (PNG, JPEG, TIFF, DICOM; see :func:`breastdx.data.images.read_image`).
            workers: Reader threads and decoder processes (>= 1).
            decode_timeout_s: Wall time allowed per file's decode, in seconds; default
                :data:`breastdx.data.decode_worker.DECODE_TIMEOUT_S`.
            **options: Passed to :meth:`predict_batch` (segmentation: ``keep_prob``, default False;
                classification: ``gradcam``, default True).

        Yields:
            ``(path, record, output, None)`` per image read (record: :class:`breastdx.data.images.ImageRecord`),
            or ``(path, None, None, reason)`` per file that could not be read, in input order.
        """
        from breastdx.data.decode_worker import DECODE_TIMEOUT_S, DecoderPool
        from breastdx.data.images import ImageReadError

        mode = self.preprocessing.mode
        paths = [Path(p) for p in paths]
        if not paths:
            return
        workers = max(1, int(workers))
        decoder = DecoderPool(workers=workers, timeout_s=decode_timeout_s or DECODE_TIMEOUT_S)

        def load(path: Path) -> tuple[Path, Any, Any, str | None]:
            try:
                rec = decoder.read_image(path, mode=mode)
                return path, rec, self.prepare(rec.array), None
            except (ImageReadError, ValueError, OSError) as e:
                return path, None, None, str(e)

        batches = [paths[i:i + self.batch_size] for i in range(0, len(paths), self.batch_size)]
        with decoder, ThreadPoolExecutor(max_workers=workers) as pool:
            pending = [pool.submit(load, p) for p in batches[0]] if batches else []
            for b in range(len(batches)):
                loaded = [f.result() for f in pending]
                pending = [pool.submit(load, p) for p in batches[b + 1]] if b + 1 < len(batches) else []
                good = [item for item in loaded if item[3] is None]
                outs = iter(self.predict_batch([g[1] for g in good], [g[2] for g in good], **options)
                            if good else [])
                for path, rec, _, err in loaded:
                    if err is None:
                        yield path, rec, next(outs), None
                    else:
                        yield path, None, None, err


PREDICTOR_MODULES = {
    "classification": "breastdx.inference.classifier",
    "segmentation": "breastdx.inference.predictor",
    "tabular": "breastdx.inference.tabular",
    "nucleus_instances": "breastdx.inference.nuclei",
}
"""The module that registers the predictor of each kind, imported when a folder of that kind is loaded (so a
tabular model loads without PyTorch)."""


def seen_in_training(predictor: Any, image: np.ndarray) -> str | None:
    """Whether an image is one a model was trained on, by its model folder's ``training_hashes.json``.

    Args:
        predictor: A loaded predictor (its ``training_hashes`` and ``training_near``).
        image: The image as read (uint8 ``(H, W)`` or ``(H, W, 3)``, the predictor's mode).

    Returns:
        ``"yes"`` (the pixels of a training image), ``"near-duplicate"`` (perceptual hash within the folder's
        threshold of a training image's: another frame of the lesion, a re-saved or re-cropped copy, the BUSI file of
        a BreastMNIST training image; only for folders that keep those), ``"no"``, or None when the folder keeps no
        training hashes.
    """
    from breastdx.data.checksum import image_hash

    known = getattr(predictor, "training_hashes", frozenset())
    if not known:
        return None
    if image_hash(image) in known:
        return "yes"
    near = getattr(predictor, "training_near", None)
    return "near-duplicate" if near is not None and near.is_near(image) else "no"


OWN_SPLIT_ADVICE = "The split the model was trained with holds them (see its model card)."
TRAIN_PART_ADVICE = "They are the training part of the model's own split (--split train)."
SPLIT_FILE_ADVICE = "Score cases it has not seen: the test part of its own split file."
EXTERNAL_ADVICE = "An external folder should hold cases from elsewhere (see cases.csv, column seen_in_training)."
"""The last sentence of :func:`training_overlap`'s note: the model's own split, another split file, a folder."""


def split_advice(model_dir: Path, split_path: Path, part: str) -> str:
    """The advice of :func:`training_overlap` for a part of a split file: the model's own (its folder's
    ``split.json``, or a file with the same bytes) or another."""
    own = Path(model_dir) / "split.json"
    if not (own.is_file() and own.read_bytes() == Path(split_path).read_bytes()):
        return SPLIT_FILE_ADVICE
    return TRAIN_PART_ADVICE if part == "train" else OWN_SPLIT_ADVICE


def training_overlap(predictor: Any, images: Sequence[np.ndarray], advice: str = "") -> dict[str, Any] | None:
    """How many of the images scored by an evaluation a model was trained on (:func:`seen_in_training`).

    A split file other than the model's own, or an external folder, can hold training images, and a dataset's
    official split can hold near-duplicates across its parts (BreastMNIST): figures on them are optimistic, as
    resubstitution is.

    Args:
        predictor: A loaded predictor (its ``training_hashes`` and ``training_near``).
        images: The images as read, in the predictor's mode.
        advice: A sentence the note ends with, saying what to score instead (or why the images are there).

    Returns:
        None when the model folder keeps no training hashes; else ``{"n", "seen_in_training",
        "near_duplicates", "note", "per_image"}``: counts, a sentence for the log and the report (None when both
        are 0), and per image ``"yes"``, ``"near-duplicate"`` or ``"no"``.
    """
    if not getattr(predictor, "training_hashes", frozenset()):
        return None
    return overlap_summary([seen_in_training(predictor, im) or "no" for im in images], advice)


def overlap_summary(seen: list[str], advice: str = "") -> dict[str, Any]:
    """:func:`training_overlap` from the images' :func:`seen_in_training` answers (``yes``, ``near-duplicate``,
    ``no``), for a caller that checks them one batch at a time."""
    exact, near = seen.count("yes"), seen.count("near-duplicate")
    note = None
    if exact or near:
        parts = [f"{exact} {'is a training image' if exact == 1 else 'are training images'} of this model"] \
            if exact else []
        parts += [f"{near} {'is a near-duplicate' if near == 1 else 'are near-duplicates'} of one (another frame, "
                  f"a re-saved or re-cropped copy)"] if near else []
        note = (f"Of the {len(seen)} images scored, {' and '.join(parts)}: figures on them are optimistic, as on "
                f"training data. {advice}").strip()
    return {"n": len(seen), "seen_in_training": exact, "near_duplicates": near, "note": note, "per_image": seen}


def logged_overlap(overlap: Mapping[str, Any]) -> dict[str, Any]:
    """An :func:`overlap_summary` as ``metrics.json`` keeps it (``per_image`` left to the per-case table), its note
    logged as a warning."""
    if overlap["note"]:
        log.warning(overlap["note"])
    return {k: v for k, v in overlap.items() if k != "per_image"}


def overlap_notes(holder: Mapping[str, Any]) -> list[str]:
    """``["WARNING: <note>"]`` for the ``training_overlap`` record of ``holder`` (``metrics.json``'s content, or the
    fields to add to it) when it has a note, else ``[]``: the line for the console and the report."""
    note = (holder.get("training_overlap") or {}).get("note")
    return [f"WARNING: {note}"] if note else []


def predictor_class(meta: ModelMeta) -> type[Predictor]:
    """The predictor class of a model folder's kind (:data:`PREDICTORS`).

    Raises:
        UnknownNameError: If no predictor is registered for the kind.
    """
    import importlib

    if meta.kind in PREDICTOR_MODULES:
        importlib.import_module(PREDICTOR_MODULES[meta.kind])
    return PREDICTORS.get(meta.kind)


def load_predictor(model_dir: str | Path, *, task: str | None = None, **options: Any) -> Predictor:
    """Load any model folder with the predictor of its kind.

    Args:
        model_dir: Folder with ``meta.json`` and the weights.
        task: When given, the task the model must belong to.
        **options: Options of the image predictors' constructors (``batch_size``, ``dtype``, ``backend``,
            ``tta``, ...); a tabular model takes none and ignores them.

    Returns:
        A :class:`~breastdx.inference.predictor.SegmentationPredictor`,
        :class:`~breastdx.inference.classifier.ClassificationPredictor`,
        :class:`~breastdx.inference.tabular.WDBCPredictor` or :class:`~breastdx.inference.nuclei.NucleusPredictor`.

    Raises:
        ModelFolderError: If the folder is not a valid model folder.
    """
    meta = ModelMeta.read(model_dir, task=task)
    return predictor_class(meta).from_checked_dir(Path(model_dir), meta, **options)
