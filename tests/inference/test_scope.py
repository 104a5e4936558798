"""Out-of-scope inputs: a grey-ultrasound model flags colour (H&E) images and thumbnails, keeps ultrasound from
BUSI and from another scanner (BUS-UCLM); the colour measure's golden values; predict writes the two columns."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from breastdx.data.images import read_image
from breastdx.inference.scope import check_scope

GRAY_256 = SimpleNamespace(preprocessing=SimpleNamespace(mode="gray", image_size=256), source_size=None)
RGB_96 = SimpleNamespace(preprocessing=SimpleNamespace(mode="rgb", image_size=96), source_size=None)
MNIST = SimpleNamespace(preprocessing=SimpleNamespace(mode="gray", image_size=64), source_size=28)


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_colourfulness_golden_values_and_the_checks(tmp_path):
    grey = np.tile(np.arange(0, 256, 1, dtype=np.uint8), (300, 2))[:, :300]
    rgb_grey = _png(tmp_path / "rgb_grey.png", np.repeat(grey[..., None], 3, axis=-1))
    pink = np.zeros((300, 300, 3), np.uint8)
    pink[...] = (230, 130, 180)  # chroma (230 - 130) / 255
    rec = read_image(_png(tmp_path / "pink.png", pink))
    assert rec.colourfulness == pytest.approx(100 / 255, abs=1e-4)
    assert read_image(rgb_grey).colourfulness == 0.0  # stored as RGB, but grey
    assert read_image(_png(tmp_path / "g.png", grey)).colourfulness == 0.0
    assert check_scope(read_image(rgb_grey), GRAY_256).in_scope
    scope = check_scope(rec, GRAY_256)
    assert not scope.in_scope and "a colour image (mean chroma 0.39" in scope.note
    assert check_scope(read_image(rgb_grey, mode="rgb"), RGB_96).note.startswith("a grey image")
    small = read_image(_png(tmp_path / "small.png", grey[:28, :28]))
    assert "28 px on its shorter side" in check_scope(small, GRAY_256).note
    assert check_scope(small, MNIST).in_scope  # BreastMNIST's own model was trained on 28 x 28 images


def test_structure_check_flags_noise_for_a_grey_model_only(tmp_path):
    from breastdx.inference.scope import neighbour_correlation

    checker = (np.indices((40, 60)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert neighbour_correlation(checker) == pytest.approx(-1.0)
    ramp = np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))
    assert neighbour_correlation(ramp) == pytest.approx(1.0)
    assert neighbour_correlation(np.full((40, 60), 7, np.uint8)) is None  # no variation: not measured
    assert neighbour_correlation(np.zeros((40, 1), np.uint8)) is None
    noise = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    assert abs(neighbour_correlation(noise)) < 0.02
    scope = check_scope(read_image(_png(tmp_path / "noise.png", noise)), GRAY_256)
    assert not scope.in_scope and scope.note.startswith("without spatial structure (neighbouring pixels correlate r = ")
    assert check_scope(read_image(_png(tmp_path / "ramp.png", ramp[:, :40].repeat(8, 0).repeat(8, 1))), GRAY_256).in_scope
    white = read_image(_png(tmp_path / "white.png", np.full((200, 200, 3), 255, np.uint8)), mode="rgb")
    assert check_scope(white, RGB_96).note.startswith("blank (every pixel has the value 255)")
    # an H&E model is not checked for structure (IDC patches go down to r = 0.03)
    rgb_noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert "spatial structure" not in check_scope(read_image(_png(tmp_path / "c.png", rgb_noise), mode="rgb"), RGB_96).note


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = os.environ.get("BREASTDX_DATA")
    if not root or not (Path(root) / "busi").is_dir():
        pytest.skip("real data not available: set BREASTDX_DATA")
    return Path(root)


def test_shipped_busi_cls_scope_on_real_images(data_root, tmp_path):
    from typer.testing import CliRunner

    from breastdx.cli import app

    inputs = {"busi": data_root / "busi" / "benign" / "benign (23).png",
              "uclm": sorted((data_root / "bus_uclm_sample" / "images").iterdir())[0],
              "breast_usg": sorted((data_root / "breast_lesions_usg_sample" / "images").iterdir())[0],
              "breakhis": next((data_root / "breakhis_224" / "DC").rglob("*.jpg")),
              "idc": next((data_root / "idc").rglob("*.png")),
              "pcam": next((data_root / "pcam_subset" / "test").rglob("*.jpg"))}
    folder = tmp_path / "in"
    folder.mkdir()
    for name, path in inputs.items():
        (folder / f"{name}{path.suffix}").write_bytes(path.read_bytes())
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["predict", "busi-cls", str(folder), f"{data_root}/breastmnist/breastmnist.npz#test",
                                      "--out", str(out), "--gradcam", "false"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["source"]).stem.split("#")[0]: r for r in csv.DictReader(open(out / "predictions.csv"))}
    for name in ("busi", "uclm", "breast_usg"):
        assert rows[name]["in_scope"] == "true" and rows[name]["scope_note"] == "", name
    for name in ("breakhis", "idc"):
        assert rows[name]["in_scope"] == "false" and "a colour image" in rows[name]["scope_note"], name
    assert rows["pcam"]["in_scope"] == "false"
    thumbs = [r for s, r in rows.items() if s.startswith("breastmnist")]
    assert thumbs and all(r["in_scope"] == "false" and "28 px" in r["scope_note"] for r in thumbs)
    every = list(csv.DictReader(open(out / "predictions.csv")))  # 6 images and the 156 BreastMNIST test thumbnails
    n_out = sum(r["in_scope"] == "false" for r in every)
    assert (n_out, len(every)) == (3 + 156, 6 + 156)
    assert f"{n_out} of {len(every)} input image(s) are unlike what this model was trained on" in " ".join(
        result.output.split())


def test_shipped_idc_flags_ultrasound_and_busi_cls_flags_hne_by_its_features(data_root, tmp_path):
    """An H&E model flags ultrasound with coloured markers (BUS-UCLM: mean chroma 0.03-0.044, which the chroma rule
    alone kept in scope) as a dark image with little colour; busi-cls's feature-space score flags a BreakHis image
    besides the colour check, and leaves BUS-UCLM in scope; both write ood_distance."""
    from typer.testing import CliRunner

    from breastdx.cli import app

    folder = tmp_path / "in"
    folder.mkdir()
    uclm = sorted((data_root / "bus_uclm_sample" / "images").iterdir())
    for i, path in enumerate(uclm[:3]):
        (folder / f"uclm{i}{path.suffix}").write_bytes(path.read_bytes())
    idc = sorted((data_root / "idc").rglob("*.png"))[:3]
    for i, path in enumerate(idc):
        (folder / f"idc{i}.png").write_bytes(path.read_bytes())
    breakhis = sorted((data_root / "breakhis_224" / "DC").rglob("*.jpg"))[:3]
    for i, path in enumerate(breakhis):
        (folder / f"breakhis{i}{path.suffix}").write_bytes(path.read_bytes())
    rows = {}
    for model in ("idc", "busi-cls"):
        out = tmp_path / model
        result = CliRunner().invoke(app, ["predict", model, str(folder), "--out", str(out), "--gradcam", "false"])
        assert result.exit_code == 0, result.output
        rows[model] = {Path(r["source"]).stem: r for r in csv.DictReader(open(out / "predictions.csv"))}
    for i in range(3):
        row = rows["idc"][f"uclm{i}"]
        assert row["in_scope"] == "false" and "a dark image with little colour" in row["scope_note"], row
        assert rows["idc"][f"idc{i}"]["in_scope"] == "true"
        assert rows["busi-cls"][f"uclm{i}"]["in_scope"] == "true"
        assert float(rows["busi-cls"][f"uclm{i}"]["ood_distance"]) <= 0.051377  # the shipped threshold
    feature_flagged = [r for s, r in rows["busi-cls"].items()
                       if s.startswith("breakhis") and "unlike the training images" in r["scope_note"]]
    assert len(feature_flagged) >= 2
    assert all(float(r["ood_distance"]) > 0.051377 for r in feature_flagged)


def test_predict_busi_seg_says_when_an_image_is_out_of_scope(data_root, tmp_path):
    """The segmenter's predictions.csv has in_scope and scope_note too (colour and size): an H&E image is flagged,
    a BUSI image is not."""
    from typer.testing import CliRunner

    from breastdx.cli import app

    he = next((data_root / "breakhis_224" / "DC").rglob("*.jpg"))
    busi = data_root / "busi" / "benign" / "benign (23).png"
    black = _png(tmp_path / "black.png", np.zeros((300, 400), np.uint8))  # the segmenter outlined a lesion on it
    out = tmp_path / "seg"
    result = CliRunner().invoke(app, ["predict", "busi-seg", str(he), str(busi), str(black), "--out", str(out),
                                      "--overlays", "false"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["source"]).name: r for r in csv.DictReader(open(out / "predictions.csv"))}
    assert rows[he.name]["in_scope"] == "false" and "a colour image" in rows[he.name]["scope_note"]
    assert rows[busi.name]["in_scope"] == "true" and rows[busi.name]["scope_note"] == ""
    assert rows["black.png"]["scope_note"] == "blank (every pixel has the value 0): there is nothing to read in it"
    text = " ".join(result.output.split())
    assert "2 of 3 input image(s) are unlike what this model was trained on" in text
    # the console table marks them too, in its last column
    lines = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in result.output.splitlines()
             if line.startswith("│")}
    assert lines == {he.name: "NO", busi.name: "yes", "black.png": "NO"}
