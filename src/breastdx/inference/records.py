"""A prediction as a record with one set of field names, written as a CSV row or answered as JSON.

The CLI's ``predictions.csv`` and the service's answers use the same fields:

* segmentation: ``lesion_found``, ``lesion_area_px``, ``lesion_area_mm2`` (None/empty without a pixel
  spacing), ``lesion_max_diameter_px`` and ``lesion_max_diameter_mm`` (the longest diameter of the largest
  lesion component; mm None/empty without a pixel spacing), ``lesion_fraction`` (area over image area),
  ``n_components``, ``max_prob``;
* classification (images and WDBC): ``probabilities`` (``{class: p}``), ``label`` (at the operating point),
  ``label_argmax`` (the most probable class), ``threshold`` (None/empty when the model has none), for classes in
  groups (BreakHis subtypes ``"malignant/ductal_carcinoma"``) ``group_probabilities`` (``{group: p}``, the sums over
  each group's classes: ``p_benign``, ``p_malignant`` columns), and for WDBC ``top_contributions`` (``[{"feature", "value", "input_value"}]``, SHAP values in probability units).

:func:`json_answer` gives the record as JSON values. :func:`csv_row` flattens it by fixed rules:
``probabilities`` and ``group_probabilities`` become one ``p_<class>`` column per class and group, ``top_contributions`` becomes
``shap_<k>_feature`` / ``shap_<k>_value`` columns and a ``top_features`` summary, ``prediction_set`` its classes
joined by ``|``, None becomes an empty cell.
Probabilities are rounded to 6 decimals, areas in mm² to 3, diameters to 3 (mm) and 2 (pixels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DIGITS = 6
"""Decimals of probabilities, thresholds, fractions and SHAP values."""

SEGMENTATION_FIELDS = ("lesion_found", "lesion_area_px", "lesion_area_mm2", "lesion_max_diameter_px",
                       "lesion_max_diameter_mm", "lesion_fraction", "n_components", "max_prob")
"""Fields of a segmentation record, in column order."""


def segmentation_record(out: Any) -> dict[str, Any]:
    """The record of one segmented image.

    Args:
        out: A :class:`~breastdx.inference.predictor.SegmentationOutput` (mask at the original size).

    Returns:
        ``{"lesion_found": bool, "lesion_area_px": int, "lesion_area_mm2": float | None,
        "lesion_max_diameter_px": float, "lesion_max_diameter_mm": float | None, "lesion_fraction": float in
        [0, 1], "n_components": int, "max_prob": float in [0, 1]}``.
    """
    area = int(out.area_px)
    diameter_mm = out.max_diameter_mm
    return {"lesion_found": area > 0, "lesion_area_px": area,
            "lesion_area_mm2": None if out.area_mm2 is None else round(float(out.area_mm2), 3),
            "lesion_max_diameter_px": round(float(out.max_diameter_px), 2),
            "lesion_max_diameter_mm": None if diameter_mm is None else round(float(diameter_mm), 3),
            "lesion_fraction": round(area / float(np.asarray(out.mask).size), DIGITS),
            "n_components": int(out.n_components), "max_prob": round(float(out.max_prob), DIGITS)}


def classification_record(prob: Sequence[float], class_names: Sequence[str], label: str,
                          threshold: float | None, prediction_set: Sequence[str] | None = None,
                          set_level: float | None = None) -> dict[str, Any]:
    """The record of one classified image or case.

    Args:
        prob: Class probabilities in class order, shape ``(K,)``, summing to 1.
        class_names: The K class names.
        label: The label at the operating point.
        threshold: The operating threshold on P(positive class), or None (most probable class).
        prediction_set: The conformal prediction set (class names), or None when the model has none.
        set_level: Its coverage level, e.g. 0.9.

    Returns:
        ``{"probabilities": {class: float}, "label", "label_argmax", "threshold": float | None}``, and
        ``"group_probabilities": {group: float}`` when class names are ``"<group>/<subtype>"``, and
        ``"prediction_set": [class, ...]``, ``"prediction_set_level": float`` when a set is given.

    Raises:
        ValueError: If ``prob`` and ``class_names`` differ in length.
    """
    p = np.asarray(prob, dtype=np.float64).ravel()
    if p.size != len(class_names):
        raise ValueError(f"{p.size} probabilities for {len(class_names)} classes ({', '.join(class_names)}).")
    record: dict[str, Any] = {"probabilities": {str(c): round(float(v), DIGITS) for c, v in zip(class_names, p)}}
    groups: dict[str, float] = {}
    for c, v in zip(class_names, p):
        if "/" in str(c):
            groups[str(c).split("/", 1)[0]] = groups.get(str(c).split("/", 1)[0], 0.0) + float(v)
    if groups:
        record["group_probabilities"] = {g: round(v, DIGITS) for g, v in groups.items()}
    record = {**record, "label": str(label), "label_argmax": str(class_names[int(p.argmax())]),
              "threshold": None if threshold is None else round(float(threshold), DIGITS)}
    if prediction_set is not None:
        record["prediction_set"] = [str(c) for c in prediction_set]
        record["prediction_set_level"] = None if set_level is None else float(set_level)
    return record


def tabular_record(p_positive: float, class_names: Sequence[str], threshold: float,
                   contributions: Sequence[tuple[str, float]] | None = None,
                   inputs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The record of one WDBC case (binary: the last class is the positive one).

    Args:
        p_positive: P(positive class) in [0, 1].
        class_names: ``(negative, positive)``.
        threshold: A case is positive when ``p_positive >= threshold``.
        contributions: The largest SHAP contributions ``(feature, value)``, or None when not computed.
        inputs: The case's feature values, to report beside each contribution (``input_value``), or None.

    Returns:
        :func:`classification_record` fields, plus ``top_contributions`` (None when not computed).
    """
    p = float(p_positive)
    record = classification_record([1.0 - p, p], class_names, class_names[int(p >= threshold)], threshold)
    record["top_contributions"] = None if contributions is None else [
        {"feature": name, "value": round(float(value), DIGITS),
         **({"input_value": float(inputs[name])} if inputs is not None else {})} for name, value in contributions]
    return record


def json_answer(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as the service answers it: the same fields and values (a copy)."""
    return {k: (dict(v) if isinstance(v, Mapping) else
                [dict(c) if isinstance(c, Mapping) else c for c in v] if isinstance(v, list) else v)
            for k, v in record.items()}


def csv_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as a ``predictions.csv`` row (see the module docstring for the flattening rules).

    Returns:
        Columns in the record's order, ``probabilities`` replaced by ``p_<class>`` columns and
        ``top_contributions`` by ``shap_<k>_feature``, ``shap_<k>_value`` and ``top_features`` (none of them when
        the contributions were not computed); None values as empty strings.
    """
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("probabilities", "group_probabilities"):
            row.update({f"p_{c}": p for c, p in value.items()})
        elif key == "prediction_set":
            row[key] = "|".join(value)
        elif key == "top_contributions":
            if value is None:
                continue
            for k, c in enumerate(value, start=1):
                row[f"shap_{k}_feature"] = c["feature"]
                row[f"shap_{k}_value"] = c["value"]
            row["top_features"] = "; ".join(f"{c['feature']} {c['value']:+.3f}" for c in value)
        else:
            row[key] = "" if value is None else value
    return row
