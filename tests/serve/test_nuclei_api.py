"""The service's monuseg answer: the shipped nucleus model on a crop of a real MoNuSeg breast test tile, through the
test client, against the same model run directly (as ``breastdx predict monuseg`` runs it)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from breastdx.serve import ServeSettings, create_app
from breastdx.serve.models import ModelRegistry
from breastdx.zoo import shipped_models

CROP = 320  # pixels: a corner of a 1000 x 1000 tile, to keep the test short


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _decode(url: str) -> np.ndarray:
    import base64

    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.fixture(scope="module")
def monuseg_dir() -> Path:
    d = shipped_models().get("monuseg")
    if d is None:
        pytest.skip("the zoo ships no monuseg model")
    return d


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """The top-left CROP x CROP pixels of the first breast test tile, uint8 (CROP, CROP, 3)."""
    root = Path(os.environ.get("BREASTDX_DATA", "")) / "monuseg_breast" / "test" / "images"
    tiles = sorted(root.glob("*.tif")) if os.environ.get("BREASTDX_DATA") else []
    if not tiles:
        pytest.skip(f"real data not available: no MoNuSeg test tile in {root}")
    return np.asarray(Image.open(tiles[0]).convert("RGB"))[:CROP, :CROP].copy()


@pytest.fixture(scope="module")
def client(monuseg_dir, tmp_path_factory):
    registry = ModelRegistry.load([monuseg_dir])
    assert not registry.unavailable, registry.unavailable
    db = tmp_path_factory.mktemp("nuclei-db") / "p.sqlite"
    app = create_app(ServeSettings(database_url=f"sqlite:///{db}", auth=False, display_max_side=256),
                     registry=registry)
    with TestClient(app) as c:
        yield c


def test_models_lists_the_nucleus_model(client):
    body = client.get("/v1/models").json()
    assert "monuseg" in body["tasks"]
    model = next(m for m in body["models"] if m["task"] == "monuseg")
    assert model["kind"] == "nucleus_instances"
    assert model["input"]["mode"] == "rgb" and model["input"]["microns_per_pixel"] == 0.25
    assert model["metrics"]["aji"]["value"] > 0.5


def test_tile_answer_matches_the_model_run_directly(client, monuseg_dir, tile):
    from breastdx.inference.nuclei import NucleusPredictor
    from breastdx.morphometry.features import grey_levels
    from breastdx.morphometry.summary import measure_nuclei, tile_summary

    r = client.post("/v1/predict/monuseg", params={"composites": "true"},
                    files={"file": ("crop.png", _png(tile), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    nuc = body["nuclei"]
    assert body["classification"] is None and body["segmentation"] is None

    labels, _ = NucleusPredictor.from_dir(monuseg_dir).predict(tile)
    nuclei = measure_nuclei(labels, grey_levels(tile))
    assert nuc["n_nuclei"] == len(nuclei) > 20
    assert nuc["n_in_summary"] == sum(n["in_summary"] for n in nuclei)
    expected = tile_summary(nuclei)
    assert nuc["features_px"]["radius_mean"] == pytest.approx(expected["radius_mean"], rel=1e-6)
    assert nuc["features_px"]["area_worst"] == pytest.approx(expected["area_worst"], rel=1e-6)
    # µm at 0.25 µm per pixel: lengths scale by 0.25, areas by 0.0625, shape ratios not at all
    um, px = nuc["features_um"], nuc["features_px"]
    assert um["radius_mean"] == pytest.approx(0.25 * px["radius_mean"], rel=1e-6)
    assert um["area_mean"] == pytest.approx(0.0625 * px["area_mean"], rel=1e-6)
    assert um["compactness_mean"] == pytest.approx(px["compactness_mean"], rel=1e-6)
    assert nuc["median_area_um2"] == pytest.approx(0.0625 * nuc["median_area_px"])
    assert "no diagnosis" in nuc["cytology_note"]

    # the outline layer: display size (256 of 320), yellow where opaque, and opaque on about the nuclei's rims
    layer = _decode(nuc["outline_overlay_png"])
    assert layer.shape == (256, 256, 4)
    opaque = layer[..., 3] > 0
    assert 0.01 < opaque.mean() < 0.3
    assert (layer[opaque][:, :3] == (255, 230, 0)).all()
    assert _decode(nuc["outline_composite_png"]).shape == (256, 256, 3)
    image = body["image"]
    assert (image["width"], image["height"]) == (CROP, CROP) and image["in_scope"] is True
    assert image["seen_in_training"] == "no"  # a test tile

    record = client.get(f"/v1/predictions/{body['prediction_id']}").json()
    assert record["label"] == f"{len(nuclei)} nuclei" and record["task"] == "monuseg"
    assert nuc["per_nucleus"] is None  # asked for only

    # ?per_nucleus=true: the rows of predict monuseg's nuclei/<tile>.csv, which the record does not keep
    body = client.post("/v1/predict/monuseg", params={"per_nucleus": "true"},
                       files={"file": ("crop.png", _png(tile), "image/png")}).json()
    rows = body["nuclei"]["per_nucleus"]
    assert len(rows) == len(nuclei) and [r["label"] for r in rows] == [n["label"] for n in nuclei]
    first = next(r for r in rows if r["in_summary"])
    assert isinstance(first["in_summary"], bool) and first["radius_um"] == pytest.approx(0.25 * first["radius"])
    assert first["area_um2"] == pytest.approx(0.0625 * first["area"])
    record = client.get(f"/v1/predictions/{body['prediction_id']}").json()
    assert "per_nucleus" not in json.dumps(record) and record["result"]["nuclei"]["n_nuclei"] == len(nuclei)


def test_a_dicom_tiles_pixel_spacing_is_its_resolution(client, tile, he_dicom, tmp_path):
    path = he_dicom(tmp_path / "tile.dcm", tile[:160, :160].copy(), (0.0005, 0.0005), shared=True)
    body = client.post("/v1/predict/monuseg", files={"file": ("tile.dcm", path.read_bytes(), "application/dicom")})
    assert body.status_code == 200, body.text
    answer = body.json()
    nuclei = answer["nuclei"]
    assert (nuclei["microns_per_pixel"], nuclei["resolution_source"]) == (0.5, "file")
    assert answer["image"]["spacing_mm"] == [0.0005, 0.0005]
    if nuclei["median_area_px"] is not None:
        assert nuclei["median_area_um2"] == pytest.approx(nuclei["median_area_px"] * 0.25)
    assert answer["image"]["in_scope"] is False and "resample the tile" in answer["image"]["scope_note"]
    png = client.post("/v1/predict/monuseg", files={"file": ("t.png", _png(tile[:160, :160].copy()), "image/png")})
    assert (png.json()["nuclei"]["microns_per_pixel"], png.json()["nuclei"]["resolution_source"]) == (0.25, "model")


def test_grey_and_oversized_uploads(client):
    y, x = np.mgrid[0:300, 0:300]
    grey = ((x * 5 + y * 3) % 256).astype(np.uint8)
    body = client.post("/v1/predict/monuseg", files={"file": ("grey.png", _png(grey), "image/png")}).json()
    assert body["image"]["in_scope"] is False and "grey" in body["image"]["scope_note"]

    r = client.post("/v1/predict/monuseg", params={"frame": 2}, files={"file": ("grey.png", _png(grey), "image/png")})
    assert r.status_code == 422 and "frame" in r.json()["error"]["message"]  # a PNG has no second frame

    r = client.post("/v1/predict/monuseg",
                    files={"file": ("big.png", _png(np.zeros((2100, 2100, 3), np.uint8)), "image/png")})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "image_too_large"
    assert "breastdx predict monuseg" in r.json()["error"]["message"]


def test_the_generator_is_left_out_saying_why():
    gan = shipped_models().get("idc-gan")
    if gan is None:
        pytest.skip("the zoo ships no idc-gan model")
    registry = ModelRegistry.load([gan], warmup=False)
    assert not registry.models
    (name, reason), = registry.unavailable
    assert "synthesize" in reason and "not a model that predicts" in reason
    assert registry.by_design == {name}
