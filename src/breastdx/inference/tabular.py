"""Predict new WDBC cases with a saved model folder: probability, label at the operating point, SHAP reasons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastdx.data.wdbc import FEATURE_NAMES, WDBCTable
from breastdx.inference.base import PREDICTORS, Predictor
from breastdx.inference.meta import ModelMeta
from breastdx.models.saved import ModelFolderError

SKOPS_FILE = "model.skops"
BACKGROUND_FILE = "shap_background.npy"
TRUSTED_TYPES = frozenset({
    "sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration",  # svm (Platt scaling)
    "sklearn.tree._tree.Tree",  # random_forest
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # gradient_boosting
})
"""The types beyond skops's own trusted defaults that the pipelines of :mod:`breastdx.models.tabular` hold once fitted
(logistic regression and k-NN need none). Not every name under ``sklearn.``, ``numpy.`` or ``scipy.``: a skops file
may name any function there (``numpy.savetxt`` as a ``FunctionTransformer``'s ``func``), and the pipeline calls it
on every case it predicts."""


def load_skops(path: Path) -> Any:
    """Load a scikit-learn model from a skops file without pickle.

    Only skops's default trusted types and :data:`TRUSTED_TYPES` are loaded; any other type or function named in the
    file is refused.

    Raises:
        ModelFolderError: If the file names a type or function outside those, or is not a readable skops file
            (corrupt, truncated, written by an incompatible skops); the message names the file.
    """
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, KeyError, json errors... of a damaged file
        raise ModelFolderError(f"{path}: not a readable skops file ({type(e).__name__}: {e}); the model folder is "
                               f"damaged: copy it again, or train the model again.") from None
    refused = [t for t in untrusted if t not in TRUSTED_TYPES]
    if refused:
        raise ModelFolderError(f"{path}: refuses to load types that no model of breastdx train wdbc holds: "
                               f"{', '.join(refused)}.")
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as e:  # noqa: BLE001 - a file whose listed types load but whose content is damaged
        raise ModelFolderError(f"{path}: the skops file cannot be loaded ({type(e).__name__}: {e}); the model "
                               f"folder is damaged: copy it again, or train the model again.") from None


def load_background(model_dir: Path) -> np.ndarray:
    """The SHAP reference cases of a model folder, :data:`BACKGROUND_FILE`: float, shape ``(m, 30)``, ``m >= 1``.

    Raises:
        ModelFolderError: If the file is missing, not a NumPy array file, or not ``(m, 30)`` finite numbers; the
            message names the file.
    """
    path = Path(model_dir) / BACKGROUND_FILE
    redo = "copy the whole model folder again, or train the model again."
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing; the model folder is incomplete (this file holds the training "
                               f"cases that SHAP explanations are relative to): {redo}")
    try:
        background = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # not an .npy file, truncated, or an object array
        raise ModelFolderError(f"{path}: not a readable NumPy array ({type(e).__name__}: {e}): {redo}") from None
    if (background.ndim != 2 or background.shape[0] < 1 or background.shape[1] != len(FEATURE_NAMES)
            or not np.issubdtype(background.dtype, np.number) or not np.isfinite(background).all()):
        raise ModelFolderError(f"{path}: expected the features of one or more cases, finite numbers of shape "
                               f"(m, {len(FEATURE_NAMES)}), got {background.dtype} of shape {background.shape}: "
                               f"{redo}")
    return np.asarray(background, dtype=float)


@PREDICTORS.register("tabular")
@dataclass
class WDBCPredictor(Predictor):
    """A WDBC model rebuilt from its folder (``model.skops`` + ``meta.json`` + SHAP background).

    Attributes:
        model: Fitted pipeline; ``predict_proba(X)[:, 1]`` is P(malignant).
        meta: The checked ``meta.json`` (a read-only mapping over the whole file).
        threshold: Operating threshold: a case is malignant when P(malignant) >= threshold.
        background: SHAP reference cases, shape ``(m, 30)``.
    """

    kind = "tabular"
    required_keys = ("feature_names", "threshold")

    model: Any
    meta: ModelMeta
    threshold: float
    background: np.ndarray

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, task: str | None = "wdbc", **options: Any) -> "WDBCPredictor":
        """Load and check a model folder (the task must be ``wdbc`` unless ``task`` says otherwise).

        Args:
            model_dir: The folder.
            task: The task the model must belong to.
            **options: Runtime options of the image predictors (``batch_size``, ``dtype``, ...): they do not
                apply to a scikit-learn model and are ignored.

        Raises:
            ModelFolderError: If a file is missing, the task is not wdbc, or the feature schema differs from
                the 30 WDBC features in order.
        """
        return super().from_dir(model_dir, task=task, **options)  # type: ignore[return-value]

    @classmethod
    def from_meta(cls, model_dir: Path, meta: ModelMeta, **options: Any) -> "WDBCPredictor":
        """Load the skops pipeline and the SHAP background of a checked folder (``options`` are ignored).

        Raises:
            ModelFolderError: If the feature schema differs from the 30 WDBC features in order, the skops
                file holds an untrusted type, or the SHAP background is missing or damaged.
        """
        if meta["feature_names"] != list(FEATURE_NAMES):
            raise ModelFolderError(f"{model_dir}: feature names and order in meta.json differ from the 30 WDBC "
                                   f"features this breastdx reads.")
        model = load_skops(model_dir / meta.weights_file)
        n_in = getattr(model, "n_features_in_", len(FEATURE_NAMES))
        if n_in != len(FEATURE_NAMES):
            raise ModelFolderError(f"{model_dir}: the model expects {n_in} features, not {len(FEATURE_NAMES)}.")
        return cls(model, meta, float(meta["threshold"]), load_background(model_dir))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(malignant), float64 in [0, 1], shape ``(n,)``, for features of shape ``(n, 30)``."""
        return self.model.predict_proba(np.asarray(X, dtype=float))[:, 1]

    def predict_records(self, X: np.ndarray, n_reasons: int = 3, seed: int = 0) -> list[dict[str, Any]]:
        """One record per case (:func:`breastdx.inference.records.tabular_record`).

        Args:
            X: Features, float ``(n, 30)`` in :data:`breastdx.data.wdbc.FEATURE_NAMES` order.
            n_reasons: How many SHAP contributions to report per case (0: none, no SHAP computed).
            seed: Seed of the SHAP permutations.

        Returns:
            ``{"probabilities", "label", "label_argmax", "threshold", "top_contributions"}`` per case; each
            contribution holds the case's value of the feature (``input_value``).
        """
        from breastdx.explain.shap_tabular import TabularExplainer, top_contributions
        from breastdx.inference.records import tabular_record

        X = np.asarray(X, dtype=float)
        prob = self.predict_proba(X)
        reasons: list[list[tuple[str, float]]] | None = None
        if n_reasons > 0:
            explanation = TabularExplainer(self.model, self.background, FEATURE_NAMES, seed=seed).explain(X)
            reasons = top_contributions(explanation.values, FEATURE_NAMES, k=n_reasons)
        classes = list(self.meta.class_names)
        return [tabular_record(prob[i], classes, self.threshold, None if reasons is None else reasons[i],
                               dict(zip(FEATURE_NAMES, X[i]))) for i in range(X.shape[0])]

    def predict_table(self, table: WDBCTable, n_reasons: int = 3, seed: int = 0) -> list[dict[str, Any]]:
        """One ``predictions.csv`` row per case (:func:`breastdx.inference.records.csv_row` of
        :meth:`predict_records`), after the case's ``id``, with its ``diagnosis`` when known.

        Args:
            table: Validated cases.
            n_reasons: How many SHAP contributions to report per case (0: none, no SHAP computed).
            seed: Seed of the SHAP permutations.

        Returns:
            Rows with keys ``id, p_benign, p_malignant, label, label_argmax, threshold`` (``diagnosis`` when
            known) and, with ``n_reasons`` > 0, ``shap_<k>_feature``, ``shap_<k>_value`` (signed, probability
            units) for k = 1..n_reasons and ``top_features``.
        """
        from breastdx.inference.records import csv_row

        classes = list(self.meta.class_names)
        rows = []
        for i, record in enumerate(self.predict_records(table.X, n_reasons, seed)):
            contributions = record.pop("top_contributions")
            row: dict[str, Any] = {"id": table.ids[i], **csv_row(record)}
            if table.y is not None:
                row["diagnosis"] = classes[int(table.y[i])]
            row.update(csv_row({"top_contributions": contributions}))
            rows.append(row)
        return rows
