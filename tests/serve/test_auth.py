"""Access control and de-identification: tokens stored as hashes, 401 without a valid token, the token named in
the record, --no-auth only on loopback, the token CLI, and a DICOM full of identifiers leaving none behind."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from breastdx import RESEARCH_USE_ONLY
from breastdx.serve import ServeSettings, create_app
from breastdx.serve.auth import bearer_token, is_loopback
from breastdx.serve.db import PredictionStore

IDENTIFIERS = {  # DICOM PS3.15 basic profile attributes, with values easy to search for
    "PatientName": "Doe^Janet^Q", "PatientID": "MRN-73519046", "PatientBirthDate": "19580317",
    "AccessionNumber": "ACC88123477", "InstitutionName": "St Example Breast Centre",
    "ReferringPhysicianName": "Smithfield^Alana", "OperatorsName": "Sonographer^Quill",
    "PerformingPhysicianName": "Radley^Bartholomew", "StudyID": "STUDY-5521973",
    "InstitutionAddress": "12 Quaywell Road, Exampletown", "OtherPatientIDs": "NHS-9434765219",
    "PatientAddress": "7 Larkspur Mews", "StudyDescription": "Left breast Doe Janet",
}


@pytest.fixture()
def secured(registry, tmp_path):
    """An app with access control on a SQLite file, and a valid token for 'dr-who'."""
    db = tmp_path / "p.sqlite"
    store = PredictionStore(f"sqlite:///{db}")
    token = store.create_token("dr-who")
    settings = ServeSettings(database_url=f"sqlite:///{db}", display_max_side=128)
    with TestClient(create_app(settings, registry=registry, store=store)) as client:
        yield client, store, token, db
    store.close()


def _assert_401(r, refused: bool) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["x-research-use-only"] == RESEARCH_USE_ONLY
    body = r.json()
    assert body["error"]["code"] == "unauthorized" and body["research_use_only"] == RESEARCH_USE_ONLY
    assert ("refused" in body["error"]["message"]) == refused, body


def test_every_v1_endpoint_needs_a_valid_token_and_open_pages_stay_open(secured, synthetic_png):
    client, store, token, _ = secured
    for method, path in [("get", "/v1/models"), ("get", "/v1/predictions"), ("get", "/v1/predictions/1"),
                         ("post", "/v1/predict/wdbc"), ("post", "/v1/predict/busi-cls")]:
        _assert_401(getattr(client, method)(path), refused=False)
        _assert_401(getattr(client, method)(path, headers={"Authorization": "Bearer not-a-token"}), refused=True)
        _assert_401(getattr(client, method)(path, headers={"Authorization": f"Basic {token}"}), refused=False)
    assert client.get("/healthz").json()["auth"] is True
    assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
    # an upload without a token is refused and not recorded
    r = client.post("/v1/predict/busi-cls", files={"file": ("a.png", synthetic_png, "image/png")})
    _assert_401(r, refused=False)
    assert store.list()[0] == 0
    # with the token: answered, and the record names the token
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/v1/predict/busi-cls", files={"file": ("a.png", synthetic_png, "image/png")}, headers=auth)
    assert r.status_code == 200, r.text
    entry = client.get(f"/v1/predictions/{r.json()['prediction_id']}", headers=auth).json()
    assert entry["token_name"] == "dr-who" and entry["input_name"] is None
    assert client.get("/v1/predictions", headers={"authorization": f"bearer {token}"}).json()["total"] == 1
    # revoked: refused at the next request
    store.revoke_token("dr-who")
    _assert_401(client.get("/v1/models", headers=auth), refused=True)


def test_tokens_are_stored_only_as_hashes(secured):
    _, store, token, db = secured
    store.create_token("second")
    raw = b"".join(p.read_bytes() for p in db.parent.glob("p.sqlite*"))
    assert token.encode() not in raw
    assert hashlib.sha256(token.encode()).hexdigest().encode() in raw
    assert len(token) >= 43 and store.token_owner(token) == "dr-who" and store.token_owner(token + "x") is None


def test_openapi_declares_the_bearer_scheme_on_v1_only(secured):
    schema = secured[0].get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for op in operations.values():
            assert ("security" in op) == path.startswith("/v1/"), path


def test_no_auth_only_on_loopback(registry):
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
        ServeSettings(host=host, auth=False)
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        assert not is_loopback(host), host
        with pytest.raises(ValueError, match="only on a loopback address"):
            ServeSettings(host=host, auth=False)
    with TestClient(create_app(ServeSettings(auth=False, database_url="sqlite://"), registry=registry)) as c:
        assert c.get("/v1/models").status_code == 200 and c.get("/healthz").json()["auth"] is False


def test_bearer_header_parsing():
    assert bearer_token([(b"authorization", b"Bearer abc")]) == "abc"
    assert bearer_token([(b"Authorization", b"bearer   abc  ")]) == "abc"
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
    assert bearer_token([(b"authorization", b"Bearer ")]) is None
    assert bearer_token([(b"x-token", b"abc")]) is None


def test_token_cli_create_list_revoke_and_serve_refusal(tmp_path):
    from breastdx.cli import app

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    runner = CliRunner()
    r = runner.invoke(app, ["token", "create", "ward-7", "--database-url", url])
    assert r.exit_code == 0, r.output
    token = r.output.strip().splitlines()[-1]
    store = PredictionStore(url)
    assert store.token_owner(token) == "ward-7"
    r = runner.invoke(app, ["token", "create", "ward-7", "--database-url", url])
    assert r.exit_code == 2 and "exists already" in r.output
    r = runner.invoke(app, ["token", "list", "--database-url", url])
    assert r.exit_code == 0 and "ward-7" in r.output and token not in r.output
    r = runner.invoke(app, ["token", "revoke", "ward-7", "--database-url", url])
    assert r.exit_code == 0 and "API token 'ward-7' revoked at" in r.output
    assert store.token_owner(token) is None
    time.sleep(1.1)
    r = runner.invoke(app, ["token", "revoke", "ward-7", "--database-url", url])  # again: says it was, and when
    assert r.exit_code == 0 and "API token 'ward-7' was revoked already at" in r.output
    r = runner.invoke(app, ["token", "revoke", "nobody", "--database-url", url])
    assert r.exit_code == 2 and "No token is named 'nobody'" in r.output
    r = runner.invoke(app, ["token", "create", "ward-7", "--database-url", url], terminal_width=300)
    assert r.exit_code == 2 and "exists already (revoked: a name is never given to another token" in r.output
    typo = f"sqlite:///{tmp_path / 'nodir' / 'cli.sqlite'}"  # list or revoke never create a database
    for args in (["list"], ["revoke", "ward-7"]):
        r = runner.invoke(app, ["token", *args, "--database-url", typo], terminal_width=300)
        assert r.exit_code == 2 and "No prediction database at " in r.output, r.output
    assert not (tmp_path / "nodir").exists()
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--no-auth", "--database-url", url])
    assert r.exit_code == 2 and "only on a loopback address" in r.output
    store.close()


def _identified_dicom() -> bytes:
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    for key, value in IDENTIFIERS.items():
        setattr(ds, key, value)
    arr = np.random.default_rng(0).integers(0, 255, size=(40, 48)).astype(np.uint8)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _new_files_holding(marker: bytes, since: float) -> list[str]:
    import os
    import tempfile

    found = []
    for root, _, files in os.walk(tempfile.gettempdir()):
        for f in files:
            p = Path(root) / f
            try:
                if p.stat().st_mtime >= since and p.stat().st_size < 50_000_000 and marker in p.read_bytes():
                    found.append(str(p))
            except OSError:
                continue
    return found


def test_dicom_identifiers_reach_neither_the_record_nor_the_answer(secured):
    import time

    client, store, token, db = secured
    data = _identified_dicom()
    start = time.time() - 1
    assert IDENTIFIERS["PatientID"].encode() in data
    name = "DOE_JANET_MRN-73519046.dcm"  # PACS exports may name files after the patient
    r = client.post("/v1/predict/ultrasound", files={"file": (name, data, "application/dicom")},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    answer = r.text
    stored = b"".join(p.read_bytes() for p in db.parent.glob("p.sqlite*"))
    assert hashlib.sha256(data).hexdigest().encode() in stored  # the input's reference is its SHA-256
    for key, value in IDENTIFIERS.items():
        for part in {value, *value.replace("^", " ").split()} - {"Road,", "Left", "breast", "Road"}:
            if len(part) >= 4:
                assert part not in answer, (key, part)
                assert part.encode() not in stored, (key, part)
    assert b"MRN-73519046" not in stored and b"DOE_JANET" not in stored  # nor the file name
    assert store.list()[1][0].input_name is None and store.list()[1][0].token_name == "dr-who"
    assert _new_files_holding(b"MRN-73519046", start) == []  # no upload written to disk


def test_a_token_that_cannot_be_checked_is_answered_503_with_the_notice(secured, monkeypatch):
    from breastdx.serve.db import DatabaseError

    client, store, token, _ = secured

    def down(_token):
        raise DatabaseError("Cannot check a token in sqlite://: OperationalError: database is locked")

    monkeypatch.setattr(store, "token_owner", down)
    r = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503, r.text  # as an endpoint answers a database failure, not 500 "unexpected"
    assert r.json()["error"]["code"] == "database_unavailable" and "could not be checked" in r.json()["error"]["message"]
    assert "sqlite" not in r.text and "locked" not in r.text  # the database and the cause: logged, not told to anyone
    assert r.headers["x-research-use-only"] == RESEARCH_USE_ONLY


def test_an_unexpected_error_carries_the_notice_header(registry, monkeypatch):
    store = PredictionStore("sqlite://")
    monkeypatch.setattr(store, "list", lambda *a: 1 / 0)
    app = create_app(ServeSettings(auth=False, database_url="sqlite://"), registry=registry, store=store)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/v1/predictions")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.headers["x-research-use-only"] == RESEARCH_USE_ONLY
    store.close()


OVER_THE_LIMIT = 30 * 2**20  # over the default upload limit (20 MiB) plus the multipart framing


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token"], ids=["no token", "unknown token"])
def test_an_upload_over_the_limit_without_a_valid_token_is_refused_401_unread(secured, asgi_call, authorization):
    """Access control comes before the size limit: a client without a valid token learns nothing of the limit,
    and its body is not read, however large it says it is."""
    client, store, _, _ = secured
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(OVER_THE_LIMIT)}
    if authorization:
        headers["authorization"] = authorization
    status, answer, body, read = asgi_call(client.app, "POST", "/v1/predict/busi-cls", headers, [bytes(65536)] * 4)
    assert status == 401 and read == 0, (status, body, read)
    assert answer["www-authenticate"].startswith("Bearer") and answer["x-research-use-only"] == RESEARCH_USE_ONLY
    assert b'"code":"unauthorized"' in body and b"limit" not in body
    # and with no declared length, a body streamed past the limit is not read either
    del headers["content-length"]
    status, _, _, read = asgi_call(client.app, "POST", "/v1/predict/busi-cls", headers, [bytes(2**20)] * 30)
    assert status == 401 and read == 0
    assert store.list()[0] == 0


def test_an_upload_over_the_limit_with_a_valid_token_is_refused_413_unread(secured, asgi_call):
    client, _, token, _ = secured
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(OVER_THE_LIMIT),
               "authorization": f"Bearer {token}"}
    status, answer, body, read = asgi_call(client.app, "POST", "/v1/predict/busi-cls", headers, [bytes(65536)] * 4)
    assert status == 413 and read == 0, (status, body)
    assert b'"code":"upload_too_large"' in body and f"{OVER_THE_LIMIT:,} bytes".encode() in body
    assert answer["x-research-use-only"] == RESEARCH_USE_ONLY


def test_a_database_failure_is_answered_503_without_naming_the_database(secured, synthetic_png, caplog):
    """The answer says the database is unavailable and what was not done; which database (its URL names the host,
    the user, a file's path) and the driver's message are logged for the administrator, never told to a client."""
    client, store, token, db = secured
    auth = {"Authorization": f"Bearer {token}"}
    with store.engine.begin() as connection:  # the record's table is gone: every write and read of it fails
        connection.exec_driver_sql("DROP TABLE predictions")
    with caplog.at_level("ERROR", logger="breastdx.serve.app"):
        wrote = client.post("/v1/predict/busi-cls", files={"file": ("a.png", synthetic_png, "image/png")},
                            headers=auth)
        read = client.get("/v1/predictions", headers=auth)
    for r in (wrote, read):
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "database_unavailable" and r.json()["error"]["problems"] == []
        assert "the service cannot use its database" in r.json()["error"]["message"]
        for leak in ("sqlite", str(db), db.name, "no such table", "OperationalError"):
            assert leak not in r.text, leak
    assert wrote.json()["error"]["message"].startswith("The prediction could not be recorded: ")
    assert "must be recorded" in wrote.json()["error"]["message"]
    assert read.json()["error"]["message"].startswith("The record could not be read: ")
    logged = [rec.getMessage() for rec in caplog.records]
    assert any(f"Cannot record the prediction in sqlite:///{db}" in m and "no such table" in m for m in logged)


def test_a_database_url_with_user_and_host_is_not_told_to_the_client(secured, monkeypatch, caplog):
    from breastdx.serve.db import DatabaseError, redact_url

    client, store, token, _ = secured
    url = redact_url("postgresql+psycopg://ward3:s3cret@db.example.org:5432/breastdx")
    cause = 'connection to server at "db.example.org" (10.1.2.3), port 5432 failed: FATAL: role "ward3" is locked'

    def down(*_args):
        raise DatabaseError(f"Cannot read the predictions from {url}: OperationalError: {cause}")

    monkeypatch.setattr(store, "list", down)
    with caplog.at_level("ERROR", logger="breastdx.serve.app"):
        r = client.get("/v1/predictions", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
    for leak in ("postgresql", "ward3", "db.example.org", "10.1.2.3", "5432", "***", "s3cret"):
        assert leak not in r.text, leak
    assert any("db.example.org" in rec.getMessage() and "s3cret" not in rec.getMessage() for rec in caplog.records)
