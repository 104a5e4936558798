"""What ordinary clients send and expect: a WDBC case id sent as a JSON number, HEAD probes of the open pages,
and a file chooser on the page that offers DICOM files named without an extension (PACS exports)."""

from __future__ import annotations

from html.parser import HTMLParser

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


# ------------------------------------------------------------------------------------------------ HEAD probes


@pytest.mark.parametrize("path", ["/", "/healthz", "/static/app.js", "/openapi.json", "/docs", "/redoc"])
def test_head_answers_as_get_without_a_body(client, asgi_call, path):
    """Uptime probes and web servers send HEAD: the GET answer's status and headers, and no body (checked at the
    app's ASGI interface: the test client drops a HEAD answer's body itself)."""
    get = client.get(path)
    status, headers, body, _ = asgi_call(client.app, "HEAD", path)
    assert get.status_code == 200 and status == 200, (path, body)
    assert body == b""
    assert headers["content-type"] == get.headers["content-type"]
    assert headers["content-length"] == str(len(get.content))
    assert headers["x-research-use-only"] == RESEARCH_USE_ONLY
    assert headers["content-security-policy"] == get.headers["content-security-policy"]


def test_head_of_a_v1_address_answers_as_its_get(client, asgi_call):
    status, headers, body, _ = asgi_call(client.app, "HEAD", "/v1/models")
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(client.get("/v1/models").content)
    status, headers, body, _ = asgi_call(client.app, "HEAD", "/v1/predictions/999999")
    assert status == 404 and body == b"" and headers["content-type"] == "application/json"


def test_head_is_not_an_operation_of_the_published_schema(client):
    schema = client.get("/openapi.json").json()
    assert all("head" not in ops for ops in schema["paths"].values())
    assert set(schema["paths"]["/healthz"]) == {"get"}


def test_head_of_a_post_only_address_is_still_refused(client):
    r = client.head("/v1/predict/wdbc")
    assert r.status_code == 405 and "POST" in r.headers["allow"]


# ------------------------------------------------------------------------------------------------ the page


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, dict[str, str | None]] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("id"):
            self.inputs[attrs["id"]] = attrs

    def handle_data(self, data):
        self.text.append(data)


def test_the_image_chooser_offers_files_without_an_extension(client):
    """A PACS export names its DICOM files IM00001, with no extension: a chooser filtered by ``accept`` hides them,
    although the service finds the format from the bytes (test_api uploads such a file). The chooser offers every
    file, and the hint says so."""
    page = _Inputs()
    page.feed(client.get("/").text)
    chooser = page.inputs["file-input"]
    assert chooser["type"] == "file" and "multiple" in chooser
    assert "accept" not in chooser  # no filter: every file is offered, whatever its name
    text = " ".join(" ".join(page.text).split())
    assert "(PNG, JPEG, TIFF, DICOM; a file name without an extension, as a PACS export's, is fine)" in text
