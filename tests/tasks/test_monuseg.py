"""The monuseg task through the command line: a tiny training run on crops of the real tiles, evaluate and predict
(skipped without BREASTDX_DATA)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.morphometry.summary import TILE_COLUMNS

runner = CliRunner()
TINY = ["--crop", "256", "--val-rows", "64", "--patch-size", "64", "--epochs", "2", "--patches-per-epoch", "16",
        "--roi-size", "128", "--threads", "1", "--progress-bar", "false", "--precise-bn-batches", "2"]


@pytest.fixture(scope="module")
def data_root() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    if not (Path(env) / "monuseg_breast").is_dir():
        pytest.skip(f"real data not available: {Path(env) / 'monuseg_breast'} does not exist")
    return Path(env)


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("monuseg") / "run"
    result = runner.invoke(app, ["train", "monuseg", "--data-dir", str(data_root), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_tiny_train_writes_the_run_folder(tiny_run):
    for name in ("config.yaml", "versions.json", "split.json", "metrics.json", "report.html", "per_tile.csv",
                 "morphometry.csv", "model/model.safetensors", "model/meta.json", "model/MODEL_CARD.md",
                 "model/split.json"):
        assert (tiny_run / name).is_file(), name
    assert not list(tiny_run.rglob("*.ckpt"))
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["n"] == 2 and "IoU > 0.5" in metrics["matching"]
    assert set(metrics["metrics"]) == {"dice", "aji", "pq", "sq", "dq"}
    assert len(metrics["metrics"]["aji"]["per_tile"]) == 2
    meta = json.loads((tiny_run / "model/meta.json").read_text())
    assert meta["task"] == "monuseg" and meta["class_names"] == ["background", "interior", "boundary"]
    assert meta["kind"] == "nucleus_instances"  # served by NucleusPredictor (load_predictor, the service)
    assert json.loads((tiny_run / "model/training_hashes.json").read_text())["n_images"] == 6
    assert meta["inference"]["windows"]["roi_size"] == 128 and meta["microns_per_pixel"] == 0.25
    assert meta["training_config"]["precise_bn_batches"] == 2  # batch-norm statistics recomputed before validation
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["training_rows"] == [0, 192] and split["validation_rows"] == [192, 256]  # 256 px crops, 64 held out
    card = (tiny_run / "model/MODEL_CARD.md").read_text()
    assert "fine-needle aspirates" in card and "not applied" in card and "Research use only" in card
    assert "fine-needle aspirates" in (tiny_run / "report.html").read_text()


def test_predict_writes_masks_overlays_and_features(tiny_run, data_root, tmp_path):
    tile = next((data_root / "monuseg_breast" / "test" / "images").glob("*.tif"))
    crop = tmp_path / "crop.png"
    Image.open(tile).convert("RGB").crop((100, 200, 331, 397)).save(crop)  # odd size 231 x 197
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    folder = tmp_path / "folder"  # a folder is read as other tasks read one: its images, its other files named
    folder.mkdir()
    Image.open(crop).convert("L").save(folder / "grey.png")  # not H&E: segmented, and flagged out of scope
    (folder / "notes.txt").write_text("not a tile")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "monuseg", str(crop), str(bad), str(folder), "--model",
                                 str(tiny_run / "model"), "--out", str(out)])
    assert result.exit_code == 1 and "bad.png: not an image" in result.output  # listed, the rest done
    assert "notes.txt" in result.output and "tile(s) are not like the H&E tiles" in result.output
    assert (out / "masks" / "crop.png").is_file() and (out / "overlays" / "crop.png").is_file()
    labels = np.asarray(Image.open(out / "masks" / "crop.png"))
    assert labels.shape == (197, 231)
    with open(out / "nuclei" / "crop.csv") as f:
        nuclei = list(csv.DictReader(f))
    assert len(nuclei) == len(np.unique(labels[labels > 0]))
    if nuclei:
        assert {"radius", "radius_um", "area_um2", "concave_points", "touches_edge"} <= set(nuclei[0])
    with open(out / "tile_features.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["tile"], r["unit"]) for r in rows] == [("crop", "px"), ("crop", "um"), ("grey", "px"), ("grey", "um")]
    assert rows[1]["microns_per_pixel"] == "0.25"
    assert list(rows[0])[4:] == list(TILE_COLUMNS)
    with open(out / "predictions.csv") as f:
        pred = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    assert sorted(pred) == ["crop.png", "grey.png"]
    assert pred["crop.png"]["width"] == "231" and pred["crop.png"]["seen_in_training"] == "no"
    # an H&E crop: in scope by colour and size (the tiny model's nuclei may still be too small for 40x)
    assert pred["crop.png"]["in_scope"] == "true" or pred["crop.png"]["scope_note"].startswith("its nuclei are small")
    assert pred["grey.png"]["in_scope"] == "false" and pred["grey.png"]["scope_note"].startswith("a grey image")
    assert (out / "masks" / "grey.png").is_file()
    assert "aspirates" in result.output


def test_predict_reads_a_dicom_tiles_resolution(tiny_run, data_root, tmp_path, he_dicom):
    """A DICOM tile's pixel spacing (its own, or its Shared Functional Groups', as whole-slide images keep it) is
    the resolution its nuclei are measured at; one far from the model's 0.25 µm is flagged; --microns-per-pixel
    overrides it; a PNG gets the model's."""
    tile = next((data_root / "monuseg_breast" / "test" / "images").glob("*.tif"))
    rgb = np.asarray(Image.open(tile).convert("RGB"))[:256, :256].copy()
    he_dicom(tmp_path / "at20x.dcm", rgb, (0.0005, 0.0005), shared=True)
    he_dicom(tmp_path / "at40x.dcm", rgb, (0.00025, 0.00025))
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    inputs = [str(tmp_path / n) for n in ("at20x.dcm", "at40x.dcm", "plain.png")]
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "monuseg", *inputs, "--model", str(tiny_run / "model"), "--out", str(out),
                                 "--overlays", "false", "--tta", "none"])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv") as f:
        pred = {Path(r["source"]).stem: r for r in csv.DictReader(f)}
    assert {k: (r["microns_per_pixel"], r["resolution_source"]) for k, r in pred.items()} == {
        "at20x": ("0.5", "file"), "at40x": ("0.25", "file"), "plain": ("0.25", "model")}
    assert pred["at20x"]["in_scope"] == "false" and "resample the tile to 0.25 µm" in pred["at20x"]["scope_note"]
    assert "its file gives" not in pred["at40x"]["scope_note"] + pred["plain"]["scope_note"]  # (the tiny model's nuclei
    # may be flagged as too small: it is barely trained)
    for stem, mpp in (("at20x", 0.5), ("at40x", 0.25)):
        with open(out / "nuclei" / f"{stem}.csv") as f:
            nuclei = list(csv.DictReader(f))
        assert nuclei and all(float(n["area_um2"]) == pytest.approx(float(n["area"]) * mpp ** 2, rel=1e-4)
                              for n in nuclei)
    given = tmp_path / "given"
    result = runner.invoke(app, ["predict", "monuseg", inputs[0], "--model", str(tiny_run / "model"), "--out",
                                 str(given), "--overlays", "false", "--tta", "none", "--microns-per-pixel", "0.3"])
    assert result.exit_code == 0, result.output
    with open(given / "predictions.csv") as f:
        row = next(csv.DictReader(f))
    assert (row["microns_per_pixel"], row["resolution_source"]) == ("0.3", "option")
    # a resolution given far from the model's is flagged as a file's is (the PNG at 0.5 was in scope)
    result = runner.invoke(app, ["predict", "monuseg", inputs[2], "--model", str(tiny_run / "model"), "--out",
                                 str(tmp_path / "at05"), "--overlays", "false", "--tta", "none",
                                 "--microns-per-pixel", "0.5"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "at05" / "predictions.csv") as f:
        row = next(csv.DictReader(f))
    assert row["in_scope"] == "false" and "--microns-per-pixel gives 0.5 µm per pixel" in row["scope_note"]


def test_tile_resolution_rules():
    from types import SimpleNamespace

    from breastdx.inference.nuclei_writer import tile_resolution

    def at(spacing):
        return SimpleNamespace(spacing_mm=spacing)

    assert tile_resolution(at(None), 0.25) == (0.25, "model")
    assert tile_resolution(at(None), None) == (None, "unknown")
    assert tile_resolution(at((0.0005, 0.0005)), 0.25, from_file=False) == (0.25, "option")
    assert tile_resolution(at((0.0005, 0.0006)), 0.25) == (0.25, "model; the file's pixels are not square (0.5 x "
                                                                 "0.6 µm)")
    assert tile_resolution(at((0.1, 0.1)), 0.25) == (0.25, "model; the file's pixel spacing (100 µm) is not a "
                                                          "microscope's")  # an ultrasound image's calibration


def test_predict_flags_a_training_tile(tiny_run, data_root, tmp_path):
    train = sorted((data_root / "monuseg_breast" / "train" / "images").glob("*.tif"))[0]
    crop = tmp_path / "train_crop.png"
    Image.open(train).convert("RGB").crop((0, 0, 256, 256)).save(crop)  # the tiny run trains on 256 px crops
    result = runner.invoke(app, ["predict", "monuseg", str(crop), "--model", str(tiny_run / "model"), "--out",
                                 str(tmp_path / "p"), "--overlays", "false"])
    assert result.exit_code == 0, result.output
    assert "training tiles of this model" in result.output
    with open(tmp_path / "p" / "predictions.csv") as f:
        assert next(csv.DictReader(f))["seen_in_training"] == "yes"
    assert not (tmp_path / "p" / "overlays").exists()


def _train_one_epoch(data_root: Path, tmp_path: Path, *options: str) -> Path:
    """A one-epoch tiny training run with ``options``; its run folder."""
    out = tmp_path / "run"
    tiny = [a if a != "2" else "1" for a in TINY]  # one epoch
    result = runner.invoke(app, ["train", "monuseg", "--data-dir", str(data_root), "--out", str(out), *tiny, *options])
    assert result.exit_code == 0, result.output
    return out


def test_macenko_normalisation_travels_with_the_model(data_root, tmp_path):
    out = _train_one_epoch(data_root, tmp_path, "--stain-normalisation", "macenko", "--all-rows", "true")
    split = json.loads((out / "split.json").read_text())  # --all-rows: patches from every row, the last 64 still score
    assert split["training_rows"] == [0, 256] and split["validation_rows"] == [192, 256]
    meta = json.loads((out / "model" / "meta.json").read_text())
    stain = meta["stain_normalisation"]
    assert stain["method"] == "macenko" and len(stain["stain_matrix"]) == 3 and len(stain["max_concentrations"]) == 2
    assert not list((out / "model").glob("*.png"))  # the numbers, not a dataset tile, travel with the model
    from breastdx.inference.nuclei import NucleusPredictor

    predictor = NucleusPredictor.from_dir(out / "model")
    assert predictor.normalizer is not None and predictor.normalizer.fitted
    tile = next((data_root / "monuseg_breast" / "test" / "images").glob("*.tif"))
    image = np.asarray(Image.open(tile).convert("RGB"))[:200, :232]
    labels, prob = predictor.predict(image)
    assert labels.shape == (200, 232) and prob.shape == (3, 200, 232)


def test_a_distance_output_and_faded_nuclei_are_trained_and_the_markers_compared(data_root, tmp_path):
    out = _train_one_epoch(data_root, tmp_path, "--distance-weight", "1", "--pale-nuclei", "0.5")
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["extra_outputs"] == ["distance"] and meta["training"]["distance_weight"] == 1.0
    assert meta["training"]["pale_nuclei"] == 0.5 and meta["training_config"]["pale_nuclei"] == 0.5
    grid = meta["validation"]["postprocessing_grid"]
    from breastdx.tasks.monuseg import DISTANCE_GRID, POSTPROCESSING_GRID, postprocessing_grid

    assert len(grid) == len(POSTPROCESSING_GRID) + len(DISTANCE_GRID)  # both kinds of markers were compared
    assert sum(len(r) == 5 and r[3] == {"markers": "distance"} for r in grid) == len(DISTANCE_GRID)
    assert postprocessing_grid({}) == POSTPROCESSING_GRID
    assert "distance to its outline" in (out / "model" / "MODEL_CARD.md").read_text()
    assert "<th>other</th>" in (out / "report.html").read_text() and "markers distance" in (out / "report.html").read_text()
    from breastdx.inference.nuclei import NucleusPredictor

    predictor = NucleusPredictor.from_dir(out / "model")
    assert predictor.postprocessing.markers in ("interior", "distance")
    tile = next((data_root / "monuseg_breast" / "test" / "images").glob("*.tif"))
    labels, prob = predictor.predict(np.asarray(Image.open(tile).convert("RGB"))[:100, :120])
    assert labels.shape == (100, 120) and prob.shape == (4, 100, 120)


def test_evaluate(tiny_run, data_root, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "monuseg", "--model", str(tiny_run / "model"), "--data-dir",
                                 str(data_root), "--out", str(out), "--split", "test"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 2 and 0 <= metrics["metrics"]["dice"]["value"] <= 1
    # µm at the resolution each tile's XML states, not the model's nominal 0.25
    assert [t["microns_per_pixel"] for t in metrics["per_tile"]] == [0.248, 0.2485]
    assert (out / "report.html").is_file() and (out / "morphometry.csv").is_file()


def test_shipped_model_scores_on_a_test_tile(data_root):
    """The shipped model's figures on a real test tile, as its model card states them (frozen outputs, with a
    tolerance for CPU differences)."""
    from breastdx.data.monuseg import find_monuseg_root, load_case, scan_monuseg
    from breastdx.evaluation.instances import instance_scores
    from breastdx.inference.nuclei import NucleusPredictor
    from breastdx.zoo import resolve_model

    model = resolve_model(None, "monuseg")
    meta = json.loads((model / "meta.json").read_text())
    case = next(c for c in scan_monuseg(find_monuseg_root(data_root)) if c.name == "TCGA-AC-A2FO-01A-01-TS1")
    image, reference = load_case(case)
    labels, prob = NucleusPredictor.from_dir(model).predict(image)
    scores = instance_scores(labels, reference)
    stated = dict(zip(["TCGA-AC-A2FO-01A-01-TS1", "TCGA-AO-A0J2-01A-01-BSA"], meta["metrics"]["aji"]["per_tile"]))
    assert scores["aji"] == pytest.approx(stated["TCGA-AC-A2FO-01A-01-TS1"], abs=0.01)
    assert scores["dice"] == pytest.approx(meta["metrics"]["dice"]["per_tile"][0], abs=0.01)
    assert abs(scores["n_pred"] - 521) <= 10  # the card: 521 found, 521 annotated
    assert prob.shape == (3, 1000, 1000) and np.allclose(prob.sum(0), 1, atol=1e-4)
    card = (model / "MODEL_CARD.md").read_text()
    assert "not applied" in card and "frozen" in card


def test_calibrate_leaves_a_shipped_model_as_it_is(tiny_run, data_root, tmp_path, monkeypatch):
    """Without --model (or with a shipped model's name), calibrate works on a copy in OUT/model: the folder inside the
    installed package is never rewritten."""
    import shutil

    import breastdx.zoo

    shipped = tmp_path / "zoo" / "monuseg"
    shutil.copytree(tiny_run / "model", shipped)
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    monkeypatch.setattr(breastdx.zoo, "shipped_models", lambda: {"monuseg": shipped})
    out = tmp_path / "cal"
    result = runner.invoke(app, ["calibrate", "monuseg", "--data-dir", str(data_root), "--out", str(out),
                                 "--tta", "none"])
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
    assert json.loads((out / "model" / "meta.json").read_text())["inference"]["tta"] == "none"
    assert "Rewrote" in result.output and "cal" in result.output


def test_calibrate_chooses_tta_and_rewrites_meta_and_card(tiny_run, data_root, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_run / "model", model)
    weights = (model / "model.safetensors").read_bytes()
    trained = json.loads((tiny_run / "model/meta.json").read_text())
    assert trained["inference"]["tta"] in ("none", "flip", "d8")  # training chose one (--tta choose)
    assert [r[0] for r in trained["validation"]["tta"]] == ["none", "flip", "d8"]
    out = tmp_path / "cal"
    result = runner.invoke(app, ["calibrate", "monuseg", "--model", str(model), "--data-dir", str(data_root),
                                 "--out", str(out), "--tta", "flip"])
    assert result.exit_code == 0, result.output
    meta = json.loads((model / "meta.json").read_text())
    assert meta["inference"]["tta"] == "flip" and [r[0] for r in meta["validation"]["tta"]] == ["flip"]
    assert (model / "model.safetensors").read_bytes() == weights  # weights untouched
    record = json.loads((out / "calibration.json").read_text())
    assert record["tta"] == "flip" and record["postprocessing"] == meta["postprocessing"]
    assert "the mean over 4 symmetries" in (model / "MODEL_CARD.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())  # the run's figures are those written into meta.json
    assert metrics["n"] == 2 and metrics["metrics"]["aji"]["per_tile"] == meta["metrics"]["aji"]["per_tile"]
    bad = runner.invoke(app, ["calibrate", "monuseg", "--model", str(model), "--data-dir", str(data_root),
                              "--out", str(tmp_path / "bad"), "--tta", "rot"])
    assert bad.exit_code != 0 and "rot" in bad.output
    tile = sorted((data_root / "monuseg_breast" / "test" / "images").glob("*.tif"))[0]
    crop = tmp_path / "crop.png"
    Image.open(tile).convert("RGB").crop((0, 0, 96, 80)).save(crop)
    masks = {}
    for tta in ("none", "d8"):  # predict overrides the model's augmentation
        result = runner.invoke(app, ["predict", "monuseg", str(crop), "--model", str(model), "--out",
                                     str(tmp_path / f"p_{tta}"), "--overlays", "false", "--tta", tta])
        assert result.exit_code == 0, result.output
        masks[tta] = np.asarray(Image.open(tmp_path / f"p_{tta}" / "masks" / "crop.png"))
    assert masks["none"].shape == masks["d8"].shape == (80, 96)
    bad = runner.invoke(app, ["predict", "monuseg", str(crop), "--model", str(model), "--out", str(tmp_path / "p_bad"),
                              "--microns-per-pixel", "-2"])  # -1 (the model's), 0 (pixels only) or a resolution
    assert bad.exit_code != 0 and "must be a number >= -1" in bad.output
    for value, said in (("-0.5", "expects a resolution in µm per pixel"), ("inf", "must be a finite number"),
                        ("1e9", "<= 10")):
        bad = runner.invoke(app, ["predict", "monuseg", str(crop), "--model", str(model), "--out",
                                  str(tmp_path / "p_bad"), f"--microns-per-pixel={value}"], terminal_width=300)
        assert bad.exit_code == 2 and said in " ".join(bad.output.split()), bad.output


def test_the_defaults_train_the_shipped_model():
    """``breastdx train monuseg`` without recipe options reproduces the shipped recipe (MonusegConfig's promise)."""
    from dataclasses import asdict

    from breastdx.tasks.monuseg import MonusegConfig
    from breastdx.zoo import shipped_models

    shipped = json.loads((shipped_models()["monuseg"] / "meta.json").read_text())["training_config"]
    defaults = asdict(MonusegConfig())
    run_only = {"threads", "recipe_choice", "progress_bar"}  # how the run was made, not what it learnt
    differ = {k: (defaults[k], v) for k, v in shipped.items() if k in defaults and k not in run_only and defaults[k] != v}
    assert not differ, f"defaults (left) differ from the shipped recipe (right): {differ}"


def test_model_card_names_monuseg_only_for_its_breast_tiles(tmp_path):
    import json

    from breastdx.data.monuseg import BREAST_TILES
    from breastdx.evaluation.nuclei_report import _data_line

    (tmp_path / "split.json").write_text(json.dumps({p: list(reversed(t)) for p, t in BREAST_TILES.items()}))
    assert _data_line(tmp_path).startswith("- MoNuSeg 2018 (Kumar et al. 2017") and "6 training and 2 test" in \
        _data_line(tmp_path)
    (tmp_path / "split.json").write_text(json.dumps({"train": ["mine-1", "mine-2"], "test": ["mine-3"]}))
    other = _data_line(tmp_path)
    assert other.startswith("- 2 training and 1 test tiles in MoNuSeg's folder layout, not the MoNuSeg 2018 breast")
    assert "TCGA" not in other and "data owner's to state" in other


def test_a_tile_half_black_is_flagged():
    from breastdx.inference.nuclei_writer import black_note

    tile = np.full((100, 100, 3), 200, np.uint8)
    assert black_note(tile) == ""
    tile[:10] = 0  # 10%: a border, kept
    assert black_note(tile) == ""
    tile[:50] = 5
    assert black_note(tile).startswith("50% of the tile is black (outside the scanned area, or painted out)")
