"""Records: one set of field names for the CSV row and the JSON answer, and the flattening rules."""

from types import SimpleNamespace

import numpy as np
import pytest

from breastdx.inference.records import (SEGMENTATION_FIELDS, classification_record, csv_row, json_answer,
                                        segmentation_record, tabular_record)


def test_segmentation_record():
    mask = np.zeros((33, 35), bool)
    mask[3:8, 4:10] = True
    out = SimpleNamespace(mask=mask, area_px=30, area_mm2=None, n_components=1, max_prob=0.87654321,
                          max_diameter_px=6.6181, max_diameter_mm=None)
    record = segmentation_record(out)
    assert tuple(record) == SEGMENTATION_FIELDS
    assert record == {"lesion_found": True, "lesion_area_px": 30, "lesion_area_mm2": None,
                      "lesion_max_diameter_px": 6.62, "lesion_max_diameter_mm": None,
                      "lesion_fraction": round(30 / (33 * 35), 6), "n_components": 1, "max_prob": 0.876543}
    assert csv_row(record)["lesion_area_mm2"] == "" and json_answer(record)["lesion_area_mm2"] is None
    assert csv_row(record)["lesion_max_diameter_mm"] == "" and json_answer(record)["lesion_max_diameter_mm"] is None
    spaced = segmentation_record(SimpleNamespace(mask=mask, area_px=30, area_mm2=0.61234, n_components=1, max_prob=1,
                                                 max_diameter_px=6.6181, max_diameter_mm=0.52945))
    assert spaced["lesion_area_mm2"] == 0.612 and spaced["lesion_max_diameter_mm"] == 0.529


def test_classification_record_row_and_answer():
    record = classification_record([0.2, 0.5, 0.3], ["normal", "benign", "malignant"], "malignant", 0.25)
    assert record == {"probabilities": {"normal": 0.2, "benign": 0.5, "malignant": 0.3}, "label": "malignant",
                      "label_argmax": "benign", "threshold": 0.25}
    assert csv_row(record) == {"p_normal": 0.2, "p_benign": 0.5, "p_malignant": 0.3, "label": "malignant",
                               "label_argmax": "benign", "threshold": 0.25}
    answer = json_answer(record)
    assert answer == record and answer["probabilities"] is not record["probabilities"]  # a copy
    assert csv_row(classification_record([0.4, 0.6], ["a", "b"], "b", None))["threshold"] == ""
    with pytest.raises(ValueError, match="2 probabilities for 3 classes"):
        classification_record([0.4, 0.6], ["a", "b", "c"], "b", None)


def test_tabular_record():
    record = tabular_record(0.75, ["benign", "malignant"], 0.8, [("worst area", 0.1234567), ("mean radius", -0.02)],
                            {"worst area": 1000.0, "mean radius": 12.5})
    assert record["label"] == "benign" and record["label_argmax"] == "malignant"  # 0.75 < 0.8
    assert record["probabilities"] == {"benign": 0.25, "malignant": 0.75}
    assert record["top_contributions"] == [{"feature": "worst area", "value": 0.123457, "input_value": 1000.0},
                                           {"feature": "mean radius", "value": -0.02, "input_value": 12.5}]
    row = csv_row({k: v for k, v in record.items()})
    assert row["shap_1_feature"] == "worst area" and row["shap_2_value"] == -0.02
    assert row["top_features"] == "worst area +0.123; mean radius -0.020" and "top_contributions" not in row
    assert "shap_1_feature" not in csv_row(tabular_record(0.9, ["benign", "malignant"], 0.5))  # no SHAP computed
