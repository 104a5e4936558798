"""What ordinary clients send and expect: a WDBC case id sent as a JSON number."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from breastdx import RESEARCH_USE_ONLY
from breastdx.data.wdbc import FEATURE_NAMES, load_wdbc
from breastdx.serve import ServeSettings, create_app


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    """An app without access control that keeps case ids (--record-names), so that the record shows them."""
    db = tmp_path_factory.mktemp("db") / "predictions.sqlite"
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{db}", display_max_side=128, record_names=True)
    with TestClient(create_app(settings, registry=registry)) as c:
        yield c


def _features() -> dict[str, float]:
    return {name: float(v) for name, v in zip(FEATURE_NAMES, load_wdbc().X[0])}


def _error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["research_use_only"] == RESEARCH_USE_ONLY
    return r.json()["error"]


# ------------------------------------------------------------------------------------------------ WDBC case ids


@pytest.mark.parametrize(("sent", "kept"), [(17, "17"), (842302, "842302"), (0, "0"), (-5, "-5"),
                                            (10**30, "1" + "0" * 30), ("017", "017")],
                         ids=["17", "842302", "0", "-5", "1e30", "text"])
def test_a_case_id_sent_as_a_number_is_kept_as_its_digits(client, sent, kept):
    r = client.post("/v1/predict/wdbc", json={"case_id": sent, "features": _features()})
    assert r.status_code == 200, r.text
    entry = client.get(f"/v1/predictions/{r.json()['prediction_id']}").json()
    assert entry["input_name"] == kept and entry["task"] == "wdbc"


def test_a_numeric_case_id_gives_the_same_answer_as_its_string(client):
    as_number = client.post("/v1/predict/wdbc", json={"case_id": 842302, "features": _features()}).json()
    as_text = client.post("/v1/predict/wdbc", json={"case_id": "842302", "features": _features()}).json()
    assert as_number["classification"] == as_text["classification"]
    assert as_number["input_sha256"] == as_text["input_sha256"]


@pytest.mark.parametrize("sent", [True, 17.5, 1e3, [17], {"id": 17}], ids=["true", "17.5", "1e3", "array", "object"])
def test_a_case_id_that_is_neither_text_nor_a_whole_number_is_refused_by_name(client, sent):
    err = _error(client.post("/v1/predict/wdbc", json={"case_id": sent, "features": _features()}), 422,
                 "invalid_request")
    assert len(err["problems"]) == 1 and err["problems"][0].startswith("case_id: ")
    assert "a string or a whole number" in err["problems"][0], err


def test_a_case_id_over_255_characters_is_refused_as_a_number_too(client):
    err = _error(client.post("/v1/predict/wdbc", json={"case_id": 10**255, "features": _features()}), 422,
                 "invalid_request")
    assert err["problems"][0].startswith("case_id: ") and "255" in err["problems"][0]


def test_the_schema_says_a_case_id_may_be_a_number(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict/wdbc"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    types = {t.get("type") for t in body["properties"]["case_id"]["anyOf"]}
    assert types == {"string", "integer", "null"}
