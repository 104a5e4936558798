"""REST API through the test client: good requests of every kind, and bad ones (always 4xx JSON, never 500)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from breastdx import RESEARCH_USE_ONLY
from breastdx.data.wdbc import FEATURE_NAMES
from breastdx.inference.records import SEGMENTATION_FIELDS
from breastdx.serve import ServeSettings, create_app
from breastdx.serve.models import ModelRegistry

MAX_UPLOAD = 1_000_000  # the client fixture's limits (conftest.py)


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 3) % 256).astype(np.uint8)


def _decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


# ------------------------------------------------------------------------------------------------ service


def test_healthz_lists_tasks_and_carries_the_notice(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["research_use_only"] == RESEARCH_USE_ONLY
    assert body["tasks"] == ["busi-cls", "busi-seg", "wdbc", "ultrasound"]
    assert body["record_names"] is False  # the page then says a case id is not recorded
    assert r.headers["x-research-use-only"] == RESEARCH_USE_ONLY


def test_models_give_cards_metrics_and_inputs(client):
    body = client.get("/v1/models").json()
    by_task = {m["task"]: m for m in body["models"]}
    assert set(by_task) == {"wdbc", "busi-seg", "busi-cls"} and body["unavailable"] == []
    wdbc = by_task["wdbc"]
    assert wdbc["kind"] == "tabular" and wdbc["threshold"] == 0.3
    assert wdbc["metrics"]["ece"]["value"] is None  # NaN in meta.json becomes null, not invalid JSON
    assert "Model card" in wdbc["model_card"] and RESEARCH_USE_ONLY in wdbc["model_card"]
    assert wdbc["input"]["features"] == list(FEATURE_NAMES) and len(wdbc["input"]["example"]) == 30
    assert by_task["busi-cls"]["kind"] == "classification" and by_task["busi-cls"]["input"]["type"] == "image"
    assert len(by_task["busi-seg"]["version"]) == 12


def test_openapi_schema_lists_the_endpoints(client):
    schema = client.get("/openapi.json").json()
    for path in ("/healthz", "/v1/models", "/v1/predict/wdbc", "/v1/predict/{task}", "/v1/predictions"):
        assert path in schema["paths"], path
    assert "multipart/form-data" in schema["paths"]["/v1/predict/{task}"]["post"]["requestBody"]["content"]
    wdbc = schema["paths"]["/v1/predict/wdbc"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert wdbc["required"] == ["features"] and "case_id" in wdbc["properties"]
    filename = schema["components"]["schemas"]["ImageInfo"]["properties"]["filename"]["description"]
    assert "--record-names" in filename  # null without it, for every upload (the client fixture's default)


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Research use only" in r.text and "default-src 'self'" in r.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


# ------------------------------------------------------------------------------------------------ images


def test_the_answer_says_when_a_model_was_trained_on_the_image(client, synthetic_png, training_image, upload):
    """The tiny busi-cls keeps the hashes of one training image: the same pixels are ``yes``, the image re-saved as a
    JPEG (other pixels) ``near-duplicate``, another image ``no``; the segmenter keeps none, the classifier decides."""
    jpeg = io.BytesIO()
    Image.fromarray(training_image).save(jpeg, format="JPEG", quality=80)
    seen = {name: upload(client, "ultrasound", data).json()["image"]["seen_in_training"]
            for name, data in (("same", _png(training_image)), ("jpeg", jpeg.getvalue()), ("other", synthetic_png))}
    assert seen == {"same": "yes", "jpeg": "near-duplicate", "other": "no"}
    assert upload(client, "busi-seg", _png(training_image)).json()["image"]["seen_in_training"] is None


def test_ultrasound_answers_classification_gradcam_and_segmentation(client, synthetic_png, upload):
    r = upload(client, "ultrasound", synthetic_png)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["task"] == "ultrasound" and [m["name"] for m in a["models"]] == ["busi-seg", "busi-cls"]
    assert a["research_use_only"] == RESEARCH_USE_ONLY and a["notes"] == []
    assert a["image"]["format"] == "PNG" and (a["image"]["height"], a["image"]["width"]) == (45, 61)
    assert a["image"]["in_scope"] is True and a["image"]["scope_note"] == ""
    contradicts = (a["classification"]["label"] == "normal") == a["segmentation"]["lesion_found"]
    assert (a["disagreement"] is not None) == contradicts
    pink = np.zeros((64, 64, 3), np.uint8)
    pink[...] = (230, 130, 180)
    buf = io.BytesIO()
    Image.fromarray(pink).save(buf, format="PNG")
    flagged = upload(client, "busi-cls", buf.getvalue()).json()["image"]  # an H&E-like colour image
    assert flagged["in_scope"] is False and flagged["scope_note"].startswith("a colour image")
    cls = a["classification"]
    assert cls["class_names"] == ["normal", "benign", "malignant"] and cls["threshold"] == 0.3
    assert sum(cls["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    expected = "malignant" if cls["probabilities"]["malignant"] >= 0.3 else max(
        ("normal", "benign"), key=lambda n: cls["probabilities"][n])
    assert cls["label"] == expected
    heat = _decode_data_url(cls["gradcam_overlay_png"])
    assert heat.shape == (45, 61, 4) and heat[..., 3].max() == 255  # alpha follows the map, max-scaled to 1
    # (images up to 160 px keep their size; larger ones get a smaller layer, see the real-image test)
    assert cls["gradcam_composite_png"] is None
    assert cls["label_argmax"] == max(cls["probabilities"], key=cls["probabilities"].get)
    # the conformal set (APS at 0.9, qhat 0.95 in the fixture): the most probable classes, in class order
    from breastdx.evaluation.conformal import prediction_sets

    p = np.array([list(cls["probabilities"].values())])
    expected_set = [c for c, keep in zip(cls["class_names"], prediction_sets(p, 0.95, "aps")[0]) if keep]
    assert cls["prediction_set"] == expected_set and cls["prediction_set_level"] == 0.9
    assert cls["label_argmax"] in cls["prediction_set"]
    seg = a["segmentation"]
    assert set(SEGMENTATION_FIELDS) <= set(seg)  # the CLI's names (predictions.csv)
    mask = _decode_data_url(seg["mask_png"])
    assert mask.shape == (45, 61) and set(np.unique(mask)) <= {0, 255}
    assert seg["lesion_area_px"] == int((mask > 0).sum()) and seg["lesion_area_mm2"] is None
    contour = _decode_data_url(seg["contour_overlay_png"])
    assert contour.shape == (45, 61, 4) and set(np.unique(contour[..., 3])) <= {0, 255}
    assert seg["contour_composite_png"] is None
    assert a["elapsed_ms"] > 0 and set(a["timings_ms"]) >= {"decode", "segmentation", "classification"}
    assert a["input_sha256"] == __import__("hashlib").sha256(synthetic_png).hexdigest()


def test_real_busi_image(client, ultrasound_png, busi_image, upload):
    r = upload(client, "ultrasound", ultrasound_png, name=busi_image.name)
    assert r.status_code == 200, r.text
    a = r.json()
    h, w = np.asarray(Image.open(busi_image)).shape[:2]
    assert (a["image"]["height"], a["image"]["width"]) == (h, w)
    assert max(a["image"]["display_height"], a["image"]["display_width"]) == 256  # display_max_side
    assert a["classification"]["label"] in a["classification"]["class_names"]
    heat = _decode_data_url(a["classification"]["gradcam_overlay_png"])
    assert max(heat.shape[:2]) == 160 and abs(heat.shape[0] / heat.shape[1] - h / w) < 0.01


def test_composites_on_request(client, synthetic_png):
    r = client.post("/v1/predict/ultrasound", params={"composites": "true"},
                    files={"file": ("c.png", synthetic_png, "image/png")})
    a = r.json()
    assert _decode_data_url(a["classification"]["gradcam_composite_png"]).shape == (45, 61, 3)
    composite = _decode_data_url(a["segmentation"]["contour_composite_png"])
    contour = _decode_data_url(a["segmentation"]["contour_overlay_png"])[..., 3] > 0
    assert composite.shape == (45, 61, 3) and (composite[contour] == [255, 48, 48]).all()


def test_single_tasks_answer_their_part_only(client, synthetic_png, upload):
    seg = upload(client, "busi-seg", synthetic_png).json()
    assert seg["classification"] is None and seg["segmentation"] is not None
    cls = upload(client, "busi-cls", synthetic_png).json()
    assert cls["segmentation"] is None and cls["classification"]["gradcam_overlay_png"].startswith("data:image/png")


def test_large_image_is_scaled_for_display_but_measured_at_full_size(client, upload):
    r = upload(client, "busi-seg", _png(_gradient(300, 700)))
    a = r.json()
    assert (a["image"]["display_height"], a["image"]["display_width"]) == (110, 256)
    seg = a["segmentation"]
    assert _decode_data_url(seg["mask_png"]).shape == (110, 256)
    assert seg["lesion_fraction"] == pytest.approx(seg["lesion_area_px"] / (300 * 700), abs=1e-6)


def test_dicom_pixel_spacing_gives_area_in_mm2(client, upload, dicom_file):
    arr = (_gradient(40, 52).astype(np.uint16) * 16)
    r = upload(client, "ultrasound", dicom_file(arr, spacing=(0.1, 0.2)), name="case.dcm",
                content_type="application/dicom")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["image"]["format"] == "DICOM" and a["image"]["spacing_mm"] == [0.1, 0.2]
    assert a["image"]["spacing_note"] == "" and a["image"]["frame"] is None
    seg = a["segmentation"]
    assert seg["lesion_area_mm2"] == pytest.approx(seg["lesion_area_px"] * 0.02, abs=1e-3)
    assert seg["lesion_max_diameter_px"] > 0 and seg["lesion_max_diameter_mm"] > 0


def test_a_placeholder_pixel_spacing_is_answered_without_mm_and_recorded_once(client, upload, dicom_file):
    """PixelSpacing NaN (once a 500 whose prediction was recorded all the same) or 0 (areas of 0 mm²): answered, with
    no mm figure and the reason; each answer's record is the one the client is given."""
    arr = (_gradient(40, 52).astype(np.uint16) * 16)
    before = client.get("/v1/predictions").json()["total"]
    ids = []
    for spacing in (("nan", "nan"), ("0", "0")):
        r = upload(client, "busi-seg", dicom_file(arr, spacing=spacing), content_type="application/dicom")
        assert r.status_code == 200, r.text
        a = r.json()
        assert a["image"]["spacing_mm"] is None and "not a calibration" in a["image"]["spacing_note"]
        assert a["segmentation"]["lesion_area_mm2"] is None
        ids.append(a["prediction_id"])
    listing = client.get("/v1/predictions").json()
    assert listing["total"] == before + 2 and [e["id"] for e in listing["items"][:2]] == ids[::-1]


def test_an_answer_that_cannot_be_sent_is_not_recorded(client, synthetic_png, monkeypatch, upload):
    import breastdx.serve.app as app_module

    before = client.get("/v1/predictions").json()["total"]
    real = app_module.finite
    monkeypatch.setattr(app_module, "finite", lambda v: {**real(v), "image": {"width": "not a number"}}
                        if isinstance(v, dict) and "image" in v else real(v))
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="image.width"):  # the service answers it with a 500 internal_error
        upload(client, "busi-seg", synthetic_png)
    monkeypatch.setattr(app_module, "finite", real)
    assert client.get("/v1/predictions").json()["total"] == before


def test_ultrasound_regions_that_disagree_give_no_mm_and_say_why(client, upload, dicom_file):
    """A two-frame cine loop whose two ultrasound regions over the image centre disagree: the first frame is read,
    the answer gives no mm figure, and says why and which frame."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    arr = _gradient(40, 52).astype(np.uint16) * 16
    ds = pydicom.dcmread(io.BytesIO(dicom_file(np.stack([arr, arr[::-1]]).reshape(80, 52))))
    ds.Rows, ds.NumberOfFrames = 40, 2
    regions = []
    for delta_cm in (0.008, 0.01):
        r = Dataset()
        r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = 0, 0, 51, 39
        r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3  # cm
        r.PhysicalDeltaX = r.PhysicalDeltaY = delta_cm
        regions.append(r)
    ds.SequenceOfUltrasoundRegions = Sequence(regions)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    r = upload(client, "ultrasound", buf.getvalue(), name="IM00001", content_type="application/dicom")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["image"]["spacing_mm"] is None and a["image"]["frame"] == [1, 2] and (a["image"]["height"], a["image"]["width"]) == (40, 52)
    assert "disagree" in a["image"]["spacing_note"] and "0.08 x 0.08 mm" in a["image"]["spacing_note"]
    assert a["segmentation"]["lesion_area_mm2"] is None and a["segmentation"]["lesion_max_diameter_mm"] is None
    second = client.post("/v1/predict/ultrasound?frame=2", files={"file": ("IM00001", buf.getvalue(),
                                                                            "application/dicom")})
    assert second.status_code == 200, second.text  # the chosen frame, said so
    assert second.json()["image"]["frame"] == [2, 2] and second.json()["image"]["image_png"] != a["image"]["image_png"]
    past = client.post("/v1/predict/ultrasound?frame=3", files={"file": ("IM00001", buf.getvalue(),
                                                                          "application/dicom")})
    assert past.status_code == 422 and "frame 3 asked, but the file holds 2 frame(s)" in past.text


def test_uploads_are_decoded_in_memory_never_written_to_disk(client, tmp_path, synthetic_png, monkeypatch, upload, dicom_file):
    """No upload reaches a file: temporary files are refused while PNG, DICOM and a bad upload are answered."""
    import tempfile

    dicom = dicom_file(_gradient(40, 52).astype(np.uint16) * 16)

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("mkstemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, no_disk)
    assert upload(client, "ultrasound", synthetic_png).status_code == 200
    r = upload(client, "ultrasound", dicom, name="case.dcm", content_type="application/dicom")
    assert r.status_code == 200 and r.json()["image"]["format"] == "DICOM"
    bad = upload(client, "ultrasound", synthetic_png[:60], name="cut.png")
    assert bad.status_code == 422 and "upload: truncated" in bad.text and "cut.png" not in bad.text
    # an upload over Starlette's 1 MiB spooling threshold stays in memory too
    import starlette.formparsers as formparsers

    spooled = []

    class Watched(formparsers.SpooledTemporaryFile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            spooled.append(self)

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", Watched)
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8)  # about 1.2 MB as PNG
    big = _png(noise)
    assert len(big) > 1024 * 1024
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{tmp_path / 'big.sqlite'}", display_max_side=256)
    with TestClient(create_app(settings, registry=client.app.state.registry)) as big_client:
        assert upload(big_client, "busi-seg", big).status_code == 200
    assert spooled and not any(f._rolled for f in spooled)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_jpeg_and_tiff(client, fmt, upload):
    r = upload(client, "busi-cls", _png(_gradient(33, 34), fmt), name="x.bin", content_type="application/octet-stream")
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == fmt


def test_format_comes_from_bytes_not_name(client, synthetic_png, upload):
    assert upload(client, "busi-cls", synthetic_png, name="notes.txt", content_type="text/plain").status_code == 200


# ------------------------------------------------------------------------------------------------ bad uploads


def test_text_file_named_png_is_not_an_image(client, api_error, upload):
    err = api_error(upload(client, "ultrasound", b"hello, this is not an image\n" * 20, name="scan.png"),
                        415, "not_an_image")
    assert err["message"].startswith("upload: not an image") and "whatever its name" in err["message"]
    assert "first bytes are text" in err["message"] and "hello" not in err["message"]  # never quoted: a name?


def test_truncated_png_is_unreadable(client, api_error, upload):
    data = _png(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    err = api_error(upload(client, "busi-seg", data[: len(data) // 2], name="cut.png"), 422, "unreadable_image")
    assert err["message"].startswith("upload: ") and "cut.png" not in err["message"]  # names may identify a patient
    assert "breastdx-upload" not in err["message"]


def test_image_over_the_pixel_limit(client, api_error, upload):
    err = api_error(upload(client, "busi-seg", _png(np.zeros((1001, 1000), np.uint8)), name="big.png"),
                        413, "image_too_large")
    assert "1,001,000" in err["message"] and "1,000,000" in err["message"]


def test_upload_over_the_size_limit(client, api_error, upload):
    data = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD + 100_000)
    err = api_error(upload(client, "busi-seg", data), 413, "upload_too_large")
    # refused on its Content-Length: the whole body (the file's 1,100,008 bytes and the multipart framing) against
    # the upload limit plus the 64 KiB framing margin, 1,000,000 + 65,536
    said = re.fullmatch(r"The request body is ([\d,]+) bytes, over the limit of 1,065,536 bytes \(upload limit plus "
                        r"multipart framing\); send a smaller file\.", err["message"])
    assert said, err["message"]
    assert len(data) < int(said.group(1).replace(",", "")) < len(data) + 1_000


def test_upload_just_over_the_limit_within_the_framing_margin(client, api_error, upload):
    data = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD)  # over by 8 bytes: passes Content-Length, caught after parsing
    err = api_error(upload(client, "busi-seg", data, name="DOE_JANE.png"), 413, "upload_too_large")
    assert err["message"].startswith("upload: the file is over the limit") and "DOE" not in err["message"]


def test_streamed_body_over_the_limit(client, api_error):
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(30):
            yield bytes(100_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/v1/predict/busi-seg", content=chunks(),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    err = api_error(r, 413, "upload_too_large")
    assert "while" not in err["message"] and "over the limit of 1,065,536 bytes" in err["message"]


def test_empty_upload(client, api_error, upload):
    api_error(upload(client, "busi-seg", b""), 422, "empty_upload")


def test_missing_file_field_and_wrong_content_type(client, api_error):
    err = api_error(client.post("/v1/predict/ultrasound", data={"image": "x"}), 415, "wrong_content_type")
    assert "'file'" in err["message"]
    err = api_error(client.post("/v1/predict/ultrasound", files={"image": ("a.png", b"123", "image/png")}),
                        422, "missing_file")
    assert "'image'" in err["message"]
    api_error(client.post("/v1/predict/ultrasound", json={"features": {}}), 415, "wrong_content_type")
    err = api_error(client.post("/v1/predict/ultrasound", files={"file": (None, b"123")}), 422, "missing_file")
    assert err["message"] == ("The field 'file' arrived as a text value, not a file: send the image as a file part "
                              "with a file name (curl: -F file=@image.png).")


def test_malformed_multipart(client, api_error):
    r = client.post("/v1/predict/busi-seg", content=b"--x\r\nnonsense", headers={"Content-Type": "multipart/form-data"})
    assert "boundary" in api_error(r, 400, "malformed_upload")["message"]
    r = client.post("/v1/predict/busi-seg", content=b"--x\r\nnonsense",
                    headers={"Content-Type": "multipart/form-data; boundary=x"})
    api_error(r, 422, "missing_file")


# ------------------------------------------------------------------------------------------------ tasks


def test_unknown_task_suggests_and_lists_served_tasks(client, synthetic_png, api_error, upload):
    err = api_error(upload(client, "busi-sge", synthetic_png), 404, "unknown_task")
    assert "Did you mean 'busi-seg'?" in err["message"] and "ultrasound" in err["message"]


def test_absent_models_answer_404_naming_the_shipped_tasks(registry, synthetic_png, api_error, upload, wdbc_features):
    only_wdbc = ModelRegistry({"wdbc": registry.models["wdbc"]})
    with TestClient(create_app(ServeSettings(auth=False, database_url="sqlite://"), registry=only_wdbc)) as c:
        for task in ("busi-seg", "busi-cls", "ultrasound", "pcam", "idc", "breakhis"):
            err = api_error(upload(c, task, synthetic_png), 404, "model_not_available")
            assert "Served tasks: wdbc." in err["message"]
        assert c.get("/healthz").json()["tasks"] == ["wdbc"]
    no_models = ModelRegistry({})
    with TestClient(create_app(ServeSettings(auth=False, database_url="sqlite://"), registry=no_models)) as c:
        assert c.get("/healthz").json()["status"] == "degraded"
        err = api_error(c.post("/v1/predict/wdbc", json={"features": wdbc_features()}), 404, "model_not_available")
        assert "(none)" in err["message"]


def test_every_image_classifier_folder_is_served(tmp_path, synthetic_png, upload):
    """A classifier of any task (here an RGB idc model) is served through the predictor registry."""
    import torch

    from breastdx.data.transforms import Preprocessing
    from breastdx.inference.classifier import save_classifier
    from breastdx.models.networks import build_network

    torch.manual_seed(2)
    net, args = build_network("unet_multitask", 3, 2, channels=[4, 8, 16], strides=[2, 2], num_res_units=1,
                              decoder=False)
    folder = tmp_path / "idc"
    save_classifier(folder, net, {"task": "idc", "architecture": "unet_multitask", "architecture_args": args,
                                  "in_channels": 3, "class_names": ["non_idc", "idc"], "positive_class": "idc",
                                  "preprocessing": Preprocessing(image_size=32, mode="rgb").to_meta(),
                                  "threshold": 0.4})
    reg = ModelRegistry.load([folder])
    assert not reg.unavailable and reg.tasks() == ["idc"] and reg.models["idc"].kind == "classification"
    with TestClient(create_app(ServeSettings(auth=False, database_url="sqlite://"), registry=reg)) as c:
        r = upload(c, "idc", synthetic_png)
        assert r.status_code == 200, r.text
        cls = r.json()["classification"]
        assert cls["class_names"] == ["non_idc", "idc"] and cls["threshold"] == 0.4
        assert cls["label"] == ("idc" if cls["probabilities"]["idc"] >= 0.4 else "non_idc")
        assert cls["gradcam_overlay_png"].startswith("data:image/png;base64,")
        assert [m["task"] for m in c.get("/v1/models").json()["models"]] == ["idc"]


def test_ultrasound_with_segmentation_only_notes_the_missing_classifier(registry, synthetic_png, upload):
    seg_only = ModelRegistry({"busi-seg": registry.models["busi-seg"]})
    with TestClient(create_app(ServeSettings(auth=False, database_url="sqlite://"), registry=seg_only)) as c:
        a = upload(c, "ultrasound", synthetic_png).json()
    assert a["classification"] is None and a["segmentation"] is not None
    assert a["notes"] == ["No busi-cls model is served, so this answer has no classification."]


# ------------------------------------------------------------------------------------------------ start-up


def test_broken_model_folder_is_left_out(model_dirs, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text(json.dumps({"schema_version": 1, "task": "busi-cls", "architecture": "resnet18",
                                                  "class_names": ["a", "b"], "weights_file": "model.safetensors"}))
    reg = ModelRegistry.load([model_dirs["wdbc"], broken, model_dirs["wdbc"]], warmup=False)
    assert list(reg.models) == ["wdbc"]
    reasons = dict(reg.unavailable)
    assert "weights file" in reasons[str(broken)] and "already served" in reasons[str(model_dirs["wdbc"])]
    assert reg.by_design == {str(model_dirs["wdbc"])}  # left out on purpose; the broken folder failed


def test_app_serves_whatever_the_zoo_holds():
    from breastdx.zoo import shipped_models

    with TestClient(create_app(ServeSettings(auth=False, database_url="sqlite://"))) as c:
        body = c.get("/v1/models").json()
    found = {m["name"] for m in body["models"]} | {u["name"] for u in body["unavailable"]}
    assert found == set(shipped_models())
    # every shipped model is served but those left out on purpose: the generator and the second breastmnist model
    assert {u["name"] for u in body["unavailable"] if u["by_design"]} == {"idc-gan", "breastmnist-single"}
    assert [u for u in body["unavailable"] if not u["by_design"]] == []
    assert set(body["tasks"]) >= {m["task"] for m in body["models"]}


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_upload_bytes must be >= 1, got 0"):
        ServeSettings(max_upload_bytes=0)
    with pytest.raises(ValueError, match="port must be in"):
        ServeSettings(port=70000)


# ------------------------------------------------------------------------------------------------ command line


def test_cli_serve_refuses_bad_options(tmp_path):
    from typer.testing import CliRunner

    from breastdx.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--database-url", "::not a url::"])
    assert result.exit_code == 2 and "is not valid" in result.output
    result = runner.invoke(app, ["serve", "--database-url", "postgresql://ann:s3cret@db host:x/preds"])
    assert result.exit_code == 2 and "is not valid (scheme 'postgresql'" in result.output
    assert "s3cret" not in result.output  # an unparsable URL's password is not printed
    result = runner.invoke(app, ["serve", "--max-upload-mb", "0", "--database-url", f"sqlite:///{tmp_path / 'p.db'}"])
    assert result.exit_code == 2 and "max_upload_bytes must be >= 1" in result.output


def test_cli_serve_answers_on_loopback(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "p.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "breastdx.cli", "serve", "--port", str(port), "--database-url",
                             f"sqlite:///{db}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "breastdx serve did not start in 180 s"
                time.sleep(0.5)
        assert r.status_code == 200 and r.json()["research_use_only"] == RESEARCH_USE_ONLY
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"serving on http://127.0.0.1:{port}" in out and db.is_file()


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 3000), (17, 5, 4), (33, 34, 3)])
def test_odd_images_are_answered(client, shape, upload):
    rng = np.random.default_rng(3)
    r = upload(client, "ultrasound", _png(rng.integers(0, 256, shape, dtype=np.uint8)))
    assert r.status_code == 200, r.text
    a = r.json()
    assert (a["image"]["height"], a["image"]["width"]) == shape[:2]
    assert 1 <= a["image"]["display_width"] <= 256 and a["segmentation"]["lesion_area_px"] <= shape[0] * shape[1]


def test_sixteen_bit_png(client, upload):
    r = upload(client, "busi-seg", _png((_gradient(40, 41).astype(np.uint16) * 200)))
    assert r.status_code == 200, r.text
    assert r.json()["image"]["mode"].startswith("I;16")
