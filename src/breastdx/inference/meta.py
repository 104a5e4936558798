"""``meta.json`` of a model folder as a typed, checked record (as timm's ``PretrainedCfg``).

:class:`ModelMeta` holds the fields every predictor reads, checked once when the file is read, with an
error that names the file, the field, what was expected and what was found. Every other key of the file
(metrics, training settings, versions, ...) stays available: a :class:`ModelMeta` is a read-only mapping
over the whole file, so ``meta["architecture"]`` and ``meta.get("metrics", {})`` work as on the dict.

A folder's *kind* (``"segmentation"``, ``"classification"``, ``"tabular"``, ``"nucleus_instances"``) chooses its predictor class
(:func:`breastdx.inference.base.load_predictor`). It is ``meta["kind"]`` when given; folders written before
that key existed are classed by their contents (a skops weights file is tabular, a ``postprocessing``
entry or a ``-seg`` task is segmentation, anything else classification).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breastdx.models.saved import (META_FILE, META_SCHEMA_VERSION, ModelFolderError, check_model_folder,
                                   load_meta_json)

MODEL_KINDS = ("classification", "segmentation", "tabular", "nucleus_instances")
"""Kinds of model folder, one predictor class each (``nucleus_instances``: the ``monuseg`` nucleus segmenter,
:class:`breastdx.inference.nuclei.NucleusPredictor`)."""


def infer_kind(data: Mapping[str, Any]) -> str:
    """The kind of a model folder from its ``meta.json`` content: ``data["kind"]``, else from its contents.

    Returns:
        One of :data:`MODEL_KINDS` (not checked when ``data["kind"]`` is given; :class:`ModelMeta` checks it).
    """
    if data.get("kind"):
        return str(data["kind"])
    if str(data.get("weights_file", "")).endswith(".skops"):
        return "tabular"
    if "postprocessing" in data or str(data.get("task", "")).endswith("-seg"):
        return "segmentation"
    return "classification"


@dataclass(frozen=True, eq=False)
class ModelMeta(Mapping[str, Any]):
    """The checked content of a model folder's ``meta.json``.

    Attributes:
        source: Where the content came from (the ``meta.json`` path), for messages.
        schema_version: Version of the file's layout, 1 to :data:`breastdx.models.saved.META_SCHEMA_VERSION`.
        task: The task that trained the model (``"busi-seg"``, ``"pcam"``, ...).
        kind: One of :data:`MODEL_KINDS`.
        architecture: Registry name of the network or pipeline.
        class_names: Class names in index order (at least two, distinct).
        positive_class: The class a threshold applies to (default the last class), or a group of classes named
            ``"<group>/<subtype>"`` (its probability is their sum).
        weights_file: File name of the weights inside the folder.
        threshold: Operating threshold in [0, 1], or None.
        data: The whole file, unknown keys included (read it through the mapping interface).
    """

    source: str
    schema_version: int
    task: str
    kind: str
    architecture: str
    class_names: tuple[str, ...]
    positive_class: str
    weights_file: str
    threshold: float | None
    data: Mapping[str, Any] = field(repr=False)

    # ----------------------------------------------------------------------------------------- reading
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path = META_FILE) -> "ModelMeta":
        """Check ``meta.json`` content and type its fields.

        Args:
            data: The parsed file.
            source: The file's path (messages only).

        Raises:
            ModelFolderError: If a required field is missing or has the wrong type or value; the message names
                ``source``, the field, what was expected and what was found.
        """
        src = str(source)
        if not isinstance(data, Mapping):
            raise ModelFolderError(f"{src}: expected a JSON object, got {type(data).__name__}.")

        def need(key: str, kind: type | tuple[type, ...], expected: str) -> Any:
            if key not in data:
                raise ModelFolderError(f"{src}: missing field {key!r} ({expected}).")
            value = data[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ModelFolderError(f"{src}: field {key!r} must be {expected}. Got {value!r} instead.")
            return value

        version = need("schema_version", int, "an integer >= 1")
        if not 1 <= version <= META_SCHEMA_VERSION:
            newer = " (newer than this breastdx reads; upgrade breastdx)" if version > META_SCHEMA_VERSION else ""
            raise ModelFolderError(f"{src}: schema version {version}{newer}; this breastdx reads 1 to "
                                   f"{META_SCHEMA_VERSION}.")
        task = need("task", str, "a task name")
        architecture = need("architecture", str, "a network or pipeline name")
        weights_file = need("weights_file", str, "the weights' file name")
        names = need("class_names", list, "a list of at least two distinct class names")
        if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
            raise ModelFolderError(f"{src}: field 'class_names' must be a list of at least two distinct class names. "
                                   f"Got {names!r} instead.")
        positive = data.get("positive_class", names[-1])
        if positive not in names and not any(n.startswith(f"{positive}/") for n in names):
            raise ModelFolderError(f"{src}: field 'positive_class' must be one of {names} (or a group of them, classes "
                                   f"named '<group>/<subtype>'). Got {positive!r} instead.")
        threshold = data.get("threshold")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
                raise ModelFolderError(f"{src}: field 'threshold' must be a number in [0, 1] or null. "
                                       f"Got {threshold!r} instead.")
            threshold = float(threshold)
        temperature = data.get("temperature")  # read by the classifiers; checked here, as the threshold is
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not 0 < temperature < float("inf")):
            raise ModelFolderError(f"{src}: field 'temperature' must be a number > 0 (probabilities are "
                                   f"softmax(logits / temperature)) or null. Got {temperature!r} instead.")
        kind = infer_kind(data)
        if kind not in MODEL_KINDS:
            raise ModelFolderError(f"{src}: field 'kind' must be one of {', '.join(MODEL_KINDS)}. Got {kind!r} instead.")
        return cls(src, version, task, kind, architecture, tuple(names), str(positive), weights_file, threshold,
                   dict(data))

    @classmethod
    def read(cls, model_dir: str | Path, task: str | None = None) -> "ModelMeta":
        """Read and check ``model_dir/meta.json``, and check that the weights file it names exists.

        Args:
            model_dir: The model folder.
            task: When given, the task the model must belong to.

        Raises:
            ModelFolderError: If the folder has no ``meta.json``, the file is not valid JSON, a field is
                missing or invalid (see :meth:`from_dict`), the task differs, or the weights file is missing.
        """
        path, data = load_meta_json(model_dir)
        meta = cls.from_dict(data, path)
        check_model_folder(model_dir, meta.task, meta.weights_file, task)
        return meta

    def require(self, keys: tuple[str, ...], what: str) -> None:
        """Check that the file has every key of ``keys``.

        Args:
            keys: Keys a predictor needs beyond the common fields.
            what: The model's description for the message (``"a segmentation model"``).

        Raises:
            ModelFolderError: Naming the file and every missing key.
        """
        missing = [k for k in keys if k not in self.data]
        if missing:
            raise ModelFolderError(f"{self.source}: missing field(s) {', '.join(repr(k) for k in missing)} of {what}.")

    def section(self, key: str) -> Mapping[str, Any]:
        """The field ``key`` where it must be a JSON object (``preprocessing``, ``inference``, ``gradcam``, ``ood``,
        ...): its value, or ``{}`` when the file has no such field.

        Raises:
            ModelFolderError: If the value is not a JSON object (null, a list, a number, text); the message names the
                file, the field and the value found.
        """
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise ModelFolderError(f"{self.source}: field {key!r} must be a JSON object. Got {value!r} instead.")
        return value

    # ----------------------------------------------------------------------------------------- mapping
    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def to_dict(self) -> dict[str, Any]:
        """The whole file as a plain dict (a copy; nested values shared)."""
        return dict(self.data)
