"""REST API through the test client: WDBC features in JSON, and the record of predictions (listing, names kept
only when asked, a failing database)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from breastdx import RESEARCH_USE_ONLY
from breastdx.data.wdbc import FEATURE_NAMES
from breastdx.serve import ServeSettings, create_app
from breastdx.serve.db import DatabaseError


# ------------------------------------------------------------------------------------------------ WDBC


def test_wdbc_prediction_with_reasons(client, wdbc_features):
    r = client.post("/v1/predict/wdbc", json={"features": wdbc_features(), "case_id": "842302"})
    assert r.status_code == 200, r.text
    a = r.json()
    cls = a["classification"]
    p = cls["probabilities"]["malignant"]
    assert cls["probabilities"]["benign"] == pytest.approx(1 - p, abs=1e-6)
    assert cls["label"] == ("malignant" if p >= 0.3 else "benign") and cls["threshold"] == 0.3
    assert len(cls["top_contributions"]) == 5
    top = cls["top_contributions"][0]
    assert top["feature"] in FEATURE_NAMES and top["input_value"] == wdbc_features()[top["feature"]]
    assert a["image"] is None and a["segmentation"] is None and len(a["input_sha256"]) == 64


def test_wdbc_accepts_uci_names_and_numeric_strings(client, wdbc_features):
    canonical = client.post("/v1/predict/wdbc", json={"features": wdbc_features(), "n_reasons": 0}).json()
    uci = {}
    for name, v in wdbc_features().items():
        if name.startswith("mean "):
            key = name[5:].replace(" ", "_") + "_mean"
        elif name.endswith(" error"):
            key = name[:-6].replace(" ", "_") + "_se"
        else:
            key = name[6:].replace(" ", "_") + "_worst"
        uci[key] = str(v)
    other = client.post("/v1/predict/wdbc", json={"features": uci, "n_reasons": 0}).json()
    assert other["classification"]["probabilities"] == canonical["classification"]["probabilities"]
    assert other["input_sha256"] == canonical["input_sha256"]
    assert other["classification"]["top_contributions"] == []


def test_wdbc_missing_features(client, api_error, wdbc_features):
    features = wdbc_features()
    del features["mean radius"], features["worst symmetry"]
    err = api_error(client.post("/v1/predict/wdbc", json={"features": features}), 422, "invalid_features")
    assert any("'mean radius'" in p and "'worst symmetry'" in p for p in err["problems"])


@pytest.mark.parametrize("value, expected", [
    ("abc", "expected a number, got 'abc'"),
    ("1_7", "expected a number, got '1_7'"),  # Python's float() reads it as 17
    (None, "expected a number, got None"),
    (True, "expected a number, got True"),
    ([1.0], "expected a number, got [1.0]"),
    (-1.5, "expected a value >= 0"),
    ("inf", "expected a finite number"),
])
def test_wdbc_bad_values(client, value, expected, api_error, wdbc_features):
    features = wdbc_features()
    features["mean texture"] = value
    err = api_error(client.post("/v1/predict/wdbc", json={"features": features}), 422, "invalid_features")
    assert any(p.startswith("'mean texture'") and expected in p for p in err["problems"]), err["problems"]


def test_wdbc_nan_in_raw_json(client, api_error, wdbc_features):
    body = json.dumps({"features": wdbc_features()}).replace("17.99", "NaN")
    err = api_error(client.post("/v1/predict/wdbc", content=body, headers={"Content-Type": "application/json"}),
                        422, "invalid_features")
    assert any("finite" in p for p in err["problems"])


def test_wdbc_unknown_and_repeated_names(client, api_error, wdbc_features):
    features = wdbc_features()
    features["radius_mean"] = 1.0
    features["mean radiuss"] = 1.0
    err = api_error(client.post("/v1/predict/wdbc", json={"features": features}), 422, "invalid_features")
    assert any("'radius_mean'" in p and "already given" in p for p in err["problems"])
    assert any("'mean radiuss'" in p and "not a WDBC feature" in p for p in err["problems"])


def test_wdbc_bad_bodies(client, api_error, wdbc_features):
    api_error(client.post("/v1/predict/wdbc", content=b"{not json", headers={"Content-Type": "application/json"}),
                  422, "invalid_json")
    err = api_error(client.post("/v1/predict/wdbc", json={"features": [1, 2, 3]}), 422, "invalid_request")
    assert any(p.startswith("features") for p in err["problems"])
    api_error(client.post("/v1/predict/wdbc", json={"feature": wdbc_features()}), 422, "invalid_request")
    api_error(client.post("/v1/predict/wdbc", json={"features": wdbc_features(), "n_reasons": 99}), 422,
                  "invalid_request")
    api_error(client.post("/v1/predict/wdbc", files={"file": ("a.csv", b"1,2", "text/csv")}), 415,
                  "wrong_content_type")
    # a feature given twice: json.loads kept the last value without a word
    body = json.dumps({"features": wdbc_features()})[:-2] + ', "mean radius": 5.0}}'
    err = api_error(client.post("/v1/predict/wdbc", content=body, headers={"Content-Type": "application/json"}),
                        422, "invalid_json")
    assert err["message"] == ("The body gives 'mean radius' more than once; a value may be given once (which one was "
                              "meant?).")


# ------------------------------------------------------------------------------------------------ record


def test_predictions_are_recorded_and_listed(client, synthetic_png, api_error, upload, wdbc_features):
    before = client.get("/v1/predictions").json()["total"]
    a = upload(client, "ultrasound", synthetic_png, name="rec.png").json()
    b = client.post("/v1/predict/wdbc", json={"features": wdbc_features(), "case_id": "rec-1"}).json()
    listing = client.get("/v1/predictions", params={"limit": 2}).json()
    assert listing["total"] == before + 2 and listing["research_use_only"] == RESEARCH_USE_ONLY
    newest, second = listing["items"]
    assert newest["id"] == b["prediction_id"] and second["id"] == a["prediction_id"]
    assert newest["task"] == "wdbc" and newest["input_name"] is None  # names are kept only with --record-names
    assert a["image"]["filename"] is None and "rec.png" not in json.dumps(second)
    assert newest["label"] == b["classification"]["label"]
    assert second["model_name"] == "busi-seg+busi-cls" and second["input_sha256"] == a["input_sha256"]
    assert second["model_version"] == "+".join(m["version"] for m in a["models"])
    assert "_png" not in json.dumps(second["result"])
    assert second["result"]["classification"]["probabilities"] == a["classification"]["probabilities"]
    assert second["result"]["notes"] == a["notes"] and second["elapsed_ms"] == a["elapsed_ms"]  # as answered
    offset = client.get("/v1/predictions", params={"limit": 1, "offset": 1}).json()
    assert offset["items"][0]["id"] == a["prediction_id"]
    only = client.get("/v1/predictions", params={"task": "wdbc"}).json()
    assert all(e["task"] == "wdbc" for e in only["items"])
    assert client.get("/v1/predictions", params={"task": ""}).json()["total"] == listing["total"]  # no filter
    err = api_error(client.get("/v1/predictions", params={"task": "busi_cls"}), 422, "unknown_task")
    assert err["message"].startswith("Unknown task 'busi_cls'. Did you mean 'busi-cls'? Choices: breakhis, ")
    one = client.get(f"/v1/predictions/{a['prediction_id']}")
    assert one.status_code == 200 and one.json()["input_name"] is None
    assert one.json()["research_use_only"] == RESEARCH_USE_ONLY


def test_names_are_recorded_only_when_asked(registry, synthetic_png, api_error, upload, wdbc_features, dicom_file):
    """--record-names keeps an upload's file name and a WDBC case id in the record and the answer; never a DICOM's
    file name (PACS exports name files after the patient)."""
    settings = ServeSettings(auth=False, database_url="sqlite://", display_max_side=256, record_names=True)
    scan = np.arange(40 * 52, dtype=np.uint16).reshape(40, 52) % 4096
    with TestClient(create_app(settings, registry=registry)) as c:
        a = upload(c, "busi-cls", synthetic_png, name="rec.png").json()
        b = c.post("/v1/predict/wdbc", json={"features": wdbc_features(), "case_id": "rec-1"}).json()
        d = upload(c, "busi-cls", dicom_file(scan), name="DOE^JANE.dcm", content_type="application/dicom").json()
        assert a["image"]["filename"] == "rec.png" and d["image"]["filename"] is None
        cut = api_error(upload(c, "busi-cls", synthetic_png[:40], name="cut.png"), 422, "unreadable_image")
        dicom = dicom_file(scan)
        frame = api_error(c.post("/v1/predict/busi-cls", params={"frame": 2},
                                     files={"file": ("DOE^JANE.dcm", dicom, "application/dicom")}), 422, "unreadable_image")
        assert cut["message"].startswith("cut.png: ") and frame["message"].startswith("upload: ")
        names = {e["id"]: e["input_name"] for e in c.get("/v1/predictions").json()["items"]}
        assert names == {a["prediction_id"]: "rec.png", b["prediction_id"]: "rec-1", d["prediction_id"]: None}


def test_prediction_list_bad_parameters(client, api_error):
    err = api_error(client.get("/v1/predictions", params={"limit": 0}), 422, "invalid_request")
    assert any(p.startswith("query.limit") for p in err["problems"])
    api_error(client.get("/v1/predictions", params={"limit": 10_000}), 422, "invalid_request")
    api_error(client.get("/v1/predictions", params={"offset": "x"}), 422, "invalid_request")
    api_error(client.get("/v1/predictions/999999"), 404, "not_found")
    api_error(client.get("/v1/predictions/abc"), 422, "invalid_request")


def test_unknown_address_and_method(client, api_error):
    api_error(client.get("/v2/nothing"), 404, "not_found")
    api_error(client.get("/v1/predict/wdbc"), 405, "method_not_allowed")


def test_database_failure_answers_503_not_500(registry, synthetic_png, api_error, upload):
    class BrokenStore:
        def add(self, **_):
            raise DatabaseError("Cannot record the prediction in sqlite://: OperationalError: disk full")

        def close(self):
            pass

    with TestClient(create_app(ServeSettings(auth=False), registry=registry, store=BrokenStore())) as c:
        err = api_error(upload(c, "busi-seg", synthetic_png), 503, "database_unavailable")
    assert "must be recorded" in err["message"] and "disk full" not in err["message"]  # the cause is logged only


def test_the_schema_gives_every_error_answer_the_error_body(client, api_error):
    """The record endpoints answer a bad parameter 422 with {"error": ...} (ErrorResponse), as every endpoint does, but
    the schema gave FastAPI's {"detail": [...]} (HTTPValidationError) for it, no 503 for a database that cannot be
    read, and no body for 401: a client generated from the schema could not read these answers."""
    schema = client.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorResponse"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    body = response.get("content", {}).get("application/json", {}).get("schema", {})
                    assert body.get("$ref") == error_ref, (method, path, status, response)
    for path in ("/v1/predictions", "/v1/predictions/{prediction_id}"):
        assert {"401", "422", "503"} <= set(schema["paths"][path]["get"]["responses"]), path
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    api_error(client.get("/v1/predictions", params={"limit": 0}), 422, "invalid_request")  # what the schema says
