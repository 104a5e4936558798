"""Review 31b of the service: slow clients, the size of error answers, and what the WDBC body accepts."""

from __future__ import annotations

import io
import json
import socket
import time


def _stalled_upload(url: str, body_sent: bytes, declared: int, wait_s: float) -> bytes:
    """Send the headers of a multipart upload declaring ``declared`` bytes, then ``body_sent`` and nothing more;
    return what the server answers within ``wait_s`` seconds (b"" when nothing)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(b"POST /v1/predict/busi-seg HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                     b"boundary=b\r\nContent-Length: " + str(declared).encode() + b"\r\n\r\n" + body_sent)
        answer = b""
        deadline = time.monotonic() + wait_s
        try:
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            pass
        return answer


def test_a_client_that_stops_sending_its_body_is_answered_408_and_let_go(registry, tmp_path, monkeypatch):
    from breastdx.serve import ServeSettings, create_app
    from breastdx.serve import app as app_module
    from breastdx.serve.app import running_server

    monkeypatch.setattr(app_module, "BODY_IDLE_TIMEOUT_S", 1.0)
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", max_upload_bytes=100_000)
    with running_server(create_app(settings, registry=registry)) as url:
        start = time.monotonic()
        answer = _stalled_upload(url, b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                                      b"\r\n\x89PNG", declared=50_000, wait_s=10)
        took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < 8
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout"
    assert "research_use_only" in body



def _post_wdbc(client, body: dict):
    return client.post("/v1/predict/wdbc", content=json.dumps(body), headers={"content-type": "application/json"})


def test_unknown_feature_names_give_a_short_answer_however_many_or_long(client, api_error, wdbc_features):
    many = {**wdbc_features(), **{f"extra_{i}": 1 for i in range(3000)}}  # 50 KB, under the 64 KiB limit
    r = _post_wdbc(client, {"features": many})
    error = api_error(r, 422, "invalid_features")
    assert len(r.content) < 20_000, len(r.content)
    assert any("2,970 more" in p for p in error["problems"]), error["problems"][-3:]
    assert "'extra_0': not a WDBC feature" in error["problems"][0]

    long_name = {**wdbc_features(), "x" * 60_000: 1}
    r = _post_wdbc(client, {"features": long_name})
    error = api_error(r, 422, "invalid_features")
    assert len(r.content) < 5_000, len(r.content)
    assert "(60000 characters)" in error["problems"][0]


def test_a_repeated_or_invalid_long_value_is_not_echoed_in_full(client, api_error, wdbc_features):
    key = "y" * 30_000
    body = '{"features": {"%s": 1, "%s": 2}}' % (key, key)
    r = client.post("/v1/predict/wdbc", content=body, headers={"content-type": "application/json"})
    api_error(r, 422, "invalid_json")
    assert len(r.content) < 5_000, len(r.content)

    r = _post_wdbc(client, {"features": wdbc_features(), "case_id": "z" * 60_000})
    error = api_error(r, 422, "invalid_request")
    assert len(r.content) < 5_000, len(r.content)
    assert "case_id" in error["problems"][0] and "255" in error["problems"][0]


def test_n_reasons_true_or_false_is_refused_not_read_as_one_or_zero(client, api_error, wdbc_features):
    for flag in (True, False):
        r = _post_wdbc(client, {"features": wdbc_features(), "n_reasons": flag})
        error = api_error(r, 422, "invalid_request")
        assert any(p.startswith("n_reasons:") and "whole number" in p for p in error["problems"]), error
    r = _post_wdbc(client, {"features": wdbc_features(), "n_reasons": 2})
    assert r.status_code == 200 and len(r.json()["classification"]["top_contributions"]) == 2


def test_a_long_file_name_is_the_same_in_the_answer_and_the_record(registry, tmp_path, upload):
    import numpy as np
    from fastapi.testclient import TestClient

    from breastdx.serve import ServeSettings, create_app
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 50), dtype=np.uint8)).save(buf, format="PNG")
    name = "case-" + "n" * 300 + ".png"
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", record_names=True)
    with TestClient(create_app(settings, registry=registry)) as c:
        answer = upload(c, "busi-seg", buf.getvalue(), name=name).json()
        record = c.get(f"/v1/predictions/{answer['prediction_id']}").json()
    assert answer["image"]["filename"] == record["input_name"] == record["result"]["image"]["filename"]
    assert name.startswith(record["input_name"])


def test_a_client_gone_before_its_wdbc_body_arrived_is_no_unexpected_error(client, caplog):
    """A client that closed the connection in the middle of a WDBC body was logged as an 'unexpected error' with a
    traceback; it is a client gone, said in one line, and nothing is predicted."""
    import asyncio
    import logging

    sent: list[dict] = []
    messages = [{"type": "http.request", "body": b'{"features": {"radius_me', "more_body": True},
                {"type": "http.disconnect"}]

    async def run() -> None:
        async def receive() -> dict:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/predict/wdbc", "raw_path": b"/v1/predict/wdbc", "root_path": "",
                 "query_string": b"", "client": ("127.0.0.1", 50001), "server": ("testserver", 80),
                 "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")]}
        await client.app(scope, receive, send)

    before = client.get("/v1/predictions").json()["total"]
    with caplog.at_level(logging.INFO):
        asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400
    assert "unexpected" not in caplog.text.lower() and "Traceback" not in caplog.text
    assert "a client went away" in caplog.text
    assert client.get("/v1/predictions").json()["total"] == before


def test_a_wdbc_body_over_64_kib_is_refused_unread(client, api_error, wdbc_features):
    """A WDBC body may be as large as an image upload (20 MiB) and was parsed whole; a case is under 4 KB."""
    import json

    big = json.dumps({"features": wdbc_features(), "case_id": "c", "pad": "p" * 70_000})
    error = api_error(client.post("/v1/predict/wdbc", content=big, headers={"content-type": "application/json"}),
                      413, "upload_too_large")
    assert "65,536 bytes" in error["message"]

    def chunks():  # no Content-Length: refused once read
        yield big[:40_000].encode()
        yield big[40_000:].encode()

    api_error(client.post("/v1/predict/wdbc", content=chunks(), headers={"content-type": "application/json"}),
              413, "upload_too_large")
