"""Hostile input to the service: every malformed, oversized or overflowing request gets a 4xx JSON answer,
never a 500, a hang or a dropped connection."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from breastdx import RESEARCH_USE_ONLY
from breastdx.data.decode_worker import DecoderPool
from breastdx.data.wdbc import FEATURE_MAX, FEATURE_NAMES, load_wdbc
from breastdx.serve import ServeSettings, create_app
from breastdx.serve.app import running_server


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "predictions.sqlite"
    settings = ServeSettings(database_url=f"sqlite:///{db}", max_upload_bytes=1_000_000, max_pixels=1_000_000,
                             display_max_side=256, auth=False)
    with DecoderPool(workers=1, timeout_s=3) as decoder, \
            TestClient(create_app(settings, registry=registry, decoder=decoder), raise_server_exceptions=False) as c:
        yield c


def _features() -> dict[str, object]:
    return {name: float(v) for name, v in zip(FEATURE_NAMES, load_wdbc().X[0])}


def _error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "research_use_only"} and body["research_use_only"] == RESEARCH_USE_ONLY
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# ------------------------------------------------------------------------------------------------ ids and offsets


@pytest.mark.parametrize("path", ["/v1/predictions/9223372036854775808", "/v1/predictions/" + "9" * 40])
def test_prediction_id_past_int64_is_a_4xx(client, path):
    err = _error(client.get(path), 422, "invalid_request")
    assert any("prediction_id" in p for p in err["problems"])


def test_largest_int64_id_is_not_found(client):
    _error(client.get("/v1/predictions/9223372036854775807"), 404, "not_found")


@pytest.mark.parametrize("params", [{"offset": "99999999999999999999"}, {"offset": "9223372036854775808"},
                                    {"limit": "99999999999999999999"}])
def test_list_offset_and_limit_past_int64_are_a_4xx(client, params):
    err = _error(client.get("/v1/predictions", params=params), 422, "invalid_request")
    assert any(p.startswith(f"query.{next(iter(params))}") for p in err["problems"])


def test_largest_int64_offset_is_an_empty_page(client):
    r = client.get("/v1/predictions", params={"offset": str(2**63 - 1)})
    assert r.status_code == 200 and r.json()["items"] == []


# ------------------------------------------------------------------------------------------------ WDBC features


@pytest.mark.parametrize("value, says", [(1e308, "expected a value <= 2811"), (int("9" * 400), "too large for a float"),
                                         ("9" * 400, "expected a finite number"), (2812.0, "expected a value <= 2811")])
def test_feature_out_of_physical_range_is_named(client, value, says):
    features = _features()
    features["mean radius"] = value
    err = _error(client.post("/v1/predict/wdbc", json={"features": features}), 422, "invalid_features")
    assert len(err["problems"]) == 1 and err["problems"][0].startswith("'mean radius': ")
    assert says in err["problems"][0]


def test_every_feature_accepts_its_bound_and_refuses_past_it(client):
    at_bound = {name: FEATURE_MAX[name] for name in FEATURE_NAMES}
    assert client.post("/v1/predict/wdbc", json={"features": at_bound}).status_code == 200
    past = {name: FEATURE_MAX[name] * 1.01 for name in FEATURE_NAMES}
    err = _error(client.post("/v1/predict/wdbc", json={"features": past}), 422, "invalid_features")
    assert len(err["problems"]) == 30


def test_huge_integer_literal_in_the_body_is_a_4xx(client):
    body = '{"features": {"mean radius": ' + "9" * 400 + "}}"
    r = client.post("/v1/predict/wdbc", content=body, headers={"content-type": "application/json"})
    _error(r, 422)
    body = '{"features": {"mean radius": ' + "9" * 5000 + "}}"  # past Python's int-from-text digit limit
    r = client.post("/v1/predict/wdbc", content=body, headers={"content-type": "application/json"})
    _error(r, 422, "invalid_json")


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_is_a_4xx(client, depth):
    for body in ("[" * depth + "]" * depth, '{"features": ' + "[" * depth + "]" * depth + "}",
                 '{"features": {"mean radius": ' + '{"a": ' * depth + "1" + "}" * depth + "}}"):
        r = client.post("/v1/predict/wdbc", content=body, headers={"content-type": "application/json"})
        _error(r, 422) if len(body) <= 64 * 1024 else _error(r, 413, "upload_too_large")  # the larger unread


# ------------------------------------------------------------------------------------------------ decoders


def test_dicom_that_makes_the_decoder_loop_gets_a_422_naming_it(client, j2k_zero_box_dicom, synthetic_png):
    start = time.monotonic()
    r = client.post("/v1/predict/busi-seg", files={"file": ("loop.dcm", j2k_zero_box_dicom.read_bytes(), "application/dicom")})
    err = _error(r, 422, "unreadable_image")
    assert err["message"].startswith("upload: undecodable: decoding did not finish within 3 s")
    assert time.monotonic() - start < 15
    ok = client.post("/v1/predict/busi-seg", files={"file": ("ok.png", synthetic_png, "image/png")})
    assert ok.status_code == 200, ok.text


def test_a_stuck_decode_does_not_hold_the_shutdown(registry, tmp_path, j2k_zero_box_dicom):
    """A request whose decode never ends (default 20 s limit) must not keep the server from stopping in seconds."""
    settings = ServeSettings(database_url=f"sqlite:///{tmp_path / 'p.sqlite'}", auth=False)
    answers: list[object] = []

    def post(url: str) -> None:
        try:
            answers.append(httpx.post(f"{url}/v1/predict/busi-seg", timeout=60,
                                      files={"file": ("loop.dcm", j2k_zero_box_dicom.read_bytes())}).status_code)
        except httpx.HTTPError as e:
            answers.append(e)

    with running_server(create_app(settings, registry=registry)) as url:
        thread = threading.Thread(target=post, args=(url,))
        thread.start()
        time.sleep(1.5)  # the decode is now looping in a worker process
        start = time.monotonic()
    stopped = time.monotonic() - start
    thread.join(timeout=30)
    assert stopped < 10, f"the server took {stopped:.1f} s to stop"
    assert answers and answers[0] != 200


# ------------------------------------------------------------------------------------------------ image bombs

_BOMB_CHILD = r"""
import io, json, resource, sys
import numpy as np
import torch
from PIL import Image

torch.set_num_threads(1)
from breastdx.data.decode_worker import DecoderPool
from breastdx.serve.models import ModelRegistry, predict_image

buf = io.BytesIO()
Image.fromarray(np.zeros((6000, 6000), np.uint8)).save(buf, "PNG", optimize=True)
models = ModelRegistry.load(sys.argv[1:3]).get("ultrasound")
with DecoderPool(workers=1) as pool:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    answer = predict_image(models, buf.getvalue(), "bomb.png", max_pixels=40_000_000, display_max_side=256,
                           decoder=pool)
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"png_bytes": len(buf.getvalue()), "grew_mib": grew, "image": answer["image"]["width"],
                  "area": answer["segmentation"]["lesion_area_px"], "fraction": answer["segmentation"]["lesion_fraction"]}))
"""


def test_a_small_png_of_6000_by_6000_pixels_costs_little_memory(model_dirs):
    """A 35 KB PNG of 36 megapixels (under the 40-megapixel limit) is decoded reduced in a worker process: the
    service's peak memory grows by tens of MiB (it grew by 620 MiB when decoded whole in the service)."""
    import json
    import os
    import subprocess
    import sys

    args = [sys.executable, "-c", _BOMB_CHILD, str(model_dirs["busi-seg"]), str(model_dirs["busi-cls"])]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["png_bytes"] < 60_000 and got["image"] == 6000
    assert got["grew_mib"] < 150, got
    assert got["area"] == pytest.approx(got["fraction"] * 6000 * 6000, rel=1e-3, abs=10)  # in stored pixels


# ------------------------------------------------------------------------------------------------ headers, schema


@pytest.mark.parametrize("method, path", [("GET", "/healthz"), ("GET", "/v1/models"), ("GET", "/"),
                                          ("GET", "/static/app.js"), ("GET", "/openapi.json"), ("GET", "/docs"),
                                          ("GET", "/v2/nothing"), ("GET", "/v1/predict/wdbc"),
                                          ("POST", "/v1/predict/wdbc")])
def test_every_answer_carries_csp_and_nosniff(client, method, path):
    r = client.request(method, path)
    assert r.headers.get("x-content-type-options") == "nosniff", (path, r.status_code)
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, (path, csp)
    assert len(r.headers.get_list("content-security-policy")) == 1


def test_405_keeps_the_allow_header(client):
    r = client.get("/v1/predict/wdbc")
    _error(r, 405, "method_not_allowed")
    assert r.headers.get("allow") == "POST"
    r = client.delete("/healthz")
    _error(r, 405, "method_not_allowed")
    assert "GET" in r.headers.get("allow", "")


def test_the_openapi_example_of_wdbc_is_accepted(client):
    schema = client.app.openapi()
    body = schema["paths"]["/v1/predict/wdbc"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    examples = body.get("examples") or [body["example"]]
    for example in examples:
        r = client.post("/v1/predict/wdbc", json=example)
        assert r.status_code == 200, r.text
        assert r.json()["classification"]["label"] == "malignant"  # the first WDBC case, 842302, is malignant
