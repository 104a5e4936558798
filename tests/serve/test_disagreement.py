"""The ultrasound answer says when the segmenter and the classifier contradict each other."""

from __future__ import annotations

from breastdx.serve.models import disagreement

CLS = {"class_names": ["normal", "benign", "malignant"]}


def test_disagreement_cases():
    lesion, none = {"lesion_found": True, "lesion_area_px": 812}, {"lesion_found": False, "lesion_area_px": 0}
    assert "classifier says normal, but the segmenter outlines a lesion (812 px)" in disagreement(
        lesion, {**CLS, "label": "normal"})
    assert "classifier says malignant, but the segmenter finds no lesion" in disagreement(
        none, {**CLS, "label": "malignant"})
    assert disagreement(lesion, {**CLS, "label": "benign"}) is None
    assert disagreement(none, {**CLS, "label": "normal"}) is None
    assert disagreement(None, {**CLS, "label": "normal"}) is None and disagreement(lesion, None) is None
    assert disagreement(none, {"class_names": ["normal_or_benign", "malignant"], "label": "malignant"}) is None
