"""The busi-seg task through the command line, on the real BUSI data (skipped without BREASTDX_DATA)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastdx.cli import app
from breastdx.zoo import shipped_models

runner = CliRunner()
TINY = ["--epochs", "1", "--max-train-batches", "2", "--image-size", "64", "--max-cases", "24", "--batch-size", "4",
        "--n-bootstrap", "100", "--progress-bar", "false"]


@pytest.fixture(scope="module")
def data_root() -> Path:
    env = os.environ.get("BREASTDX_DATA")
    if not env:
        pytest.skip("real data not available: set BREASTDX_DATA to the data root (e.g. ../shared/data)")
    root = Path(env)
    if not (root / "busi").is_dir():
        pytest.skip(f"real data not available: {root / 'busi'} does not exist")
    return root


@pytest.fixture(scope="module")
def split_file(data_root, tmp_path_factory) -> Path:
    """The grouped split, made once for the module (hashing 780 images takes a few seconds)."""
    from breastdx.data.splits import busi_split

    path = tmp_path_factory.mktemp("split") / "split.json"
    busi_split(data_root, path, seed=0)
    return path


@pytest.fixture(scope="module")
def tiny_run(data_root, split_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("busi_seg") / "run"
    result = runner.invoke(app, ["train", "busi-seg", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(split_file), *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_tiny_train_writes_the_run_folder(tiny_run):
    for name in ("config.yaml", "versions.json", "split.json", "metrics.json", "report.html", "test_per_image.csv",
                 "dice_distribution.png", "hd95_distribution.png", "training_curves.png",
                 "model/model.safetensors", "model/meta.json", "model/MODEL_CARD.md", "model/split.json"):
        assert (tiny_run / name).is_file(), name
    assert not (tiny_run / "checkpoints").exists()  # no Lightning checkpoint is kept
    assert not list(tiny_run.rglob("*.ckpt"))
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["task"] == "busi-seg" and "test split" in metrics["split"] and metrics["n"] > 0
    for name in ("dice", "iou", "hd95", "dice_benign", "dice_malignant", "hd95_malignant", "normal_fp_share"):
        m = metrics["metrics"][name]
        assert isinstance(m["value"], float) and len(m["ci95"]) == 2, name
    meta = json.loads((tiny_run / "model" / "meta.json").read_text())
    assert meta["architecture"] == "unet" and meta["preprocessing"]["image_size"] == 64
    assert meta["class_names"] == ["background", "lesion"] and meta["data_checksum"]
    assert "versions" in meta and meta["seed"] == 0 and meta["metrics"]["dice"] == metrics["metrics"]["dice"]
    html = (tiny_run / "report.html").read_text()
    assert "case_benign_worst.png" in html and "dice_distribution.png" in html
    card = (tiny_run / "model" / "MODEL_CARD.md").read_text()
    assert ("A smoke run (--max-cases 24): at most 24 evenly spaced cases of each split were trained on, validated "
            "on and tested (24 test cases), not all.") in card
    assert f"seed 0, ratios [0.7, 0.1, 0.2], method {meta['split_method']}" in card


def test_the_model_keeps_its_training_images_hashes_and_predict_flags_them(tiny_run, data_root, tmp_path):
    import csv

    split = json.loads((tiny_run / "split.json").read_text())
    saved = json.loads((tiny_run / "model" / "training_hashes.json").read_text())
    assert saved["n_images"] == 24  # --max-cases 24 training cases, each hashed once
    name = split["train"][0]  # the first of the evenly spaced training cases
    train_image = data_root / "busi" / name.split(" (")[0] / f"{name}.png"
    test_name = split["test"][0]
    test_image = data_root / "busi" / test_name.split(" (")[0] / f"{test_name}.png"
    result = runner.invoke(app, ["predict", "busi-seg", str(train_image), str(test_image), "--model",
                                 str(tiny_run / "model"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "p" / "predictions.csv", newline="") as fh:
        assert [r["seen_in_training"] for r in csv.DictReader(fh)] == ["yes", "no"]


@pytest.mark.slow
def test_same_seed_same_metrics(tiny_run, data_root, split_file, tmp_path):
    out = tmp_path / "again"
    result = runner.invoke(app, ["train", "busi-seg", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(split_file), *TINY])
    assert result.exit_code == 0, result.output
    a = json.loads((tiny_run / "metrics.json").read_text())["metrics"]
    b = json.loads((out / "metrics.json").read_text())["metrics"]
    assert a == b


def test_evaluate_a_trained_model(tiny_run, data_root, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "busi-seg", "--model", str(tiny_run / "model"), "--data-dir",
                                 str(data_root), "--out", str(out), "--split", "val", "--n-bootstrap", "100"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"].startswith("val split") and "dice" in metrics["metrics"]
    assert (out / "report.html").is_file() and (out / "val_per_image.csv").is_file()
    assert metrics["tta"] == "none"
    flipped = tmp_path / "eval-tta"
    result = runner.invoke(app, ["evaluate", "busi-seg", "--model", str(tiny_run / "model"), "--data-dir",
                                 str(data_root), "--out", str(flipped), "--split", "val", "--n-bootstrap", "100",
                                 "--tta", "hflip"])
    assert result.exit_code == 0, result.output
    with_tta = json.loads((flipped / "metrics.json").read_text())
    assert with_tta["tta"] == "hflip" and with_tta["metrics"]["dice"]["value"] != metrics["metrics"]["dice"]["value"]


def test_focal_gamma_changes_the_loss_and_nothing_else(tiny_run, data_root, split_file, tmp_path):
    """``--focal-gamma 2``: the same seed, data and steps as the tiny run, so only the loss can change the weights."""
    from safetensors.numpy import load_file

    out = tmp_path / "focal"
    result = runner.invoke(app, ["train", "busi-seg", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(split_file), *TINY, "--focal-gamma", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["training"]["focal_gamma"] == 2.0
    assert json.loads((tiny_run / "metrics.json").read_text())["training"]["focal_gamma"] == 0.0
    focal, dice_ce = load_file(out / "model" / "model.safetensors"), load_file(tiny_run / "model" / "model.safetensors")
    assert focal.keys() == dice_ce.keys()
    assert any(not np.array_equal(focal[k], dice_ce[k]) for k in focal)


@pytest.mark.parametrize("arch", ["deeplabv3plus", pytest.param("fcn", marks=pytest.mark.slow)])
def test_other_architectures_train_and_predict(arch, data_root, split_file, tmp_path):
    """``--arch deeplabv3plus`` / ``fcn`` go through the same pipeline, and their model folder predicts."""
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "busi-seg", "--data-dir", str(data_root), "--out", str(out),
                                 "--split-file", str(split_file), "--arch", arch, *TINY, "--max-cases", "8"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["architecture"] == arch and meta["architecture_args"]["backbone"] == "resnet18"
    image = data_root / "busi" / "benign" / "benign (1).png"
    result = runner.invoke(app, ["predict", "busi-seg", str(image), "--model", str(out / "model"),
                                 "--out", str(tmp_path / "pred"), "--overlays", "false"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    mask = np.asarray(Image.open(tmp_path / "pred" / row["mask"]))
    assert mask.shape == (int(row["height"]), int(row["width"])) == Image.open(image).size[::-1]


def test_bad_options_are_reported(data_root, tmp_path):
    result = runner.invoke(app, ["train", "busi-seg", "--data-dir", str(data_root), "--out", str(tmp_path / "x"),
                                 "--arch", "unett"])
    assert result.exit_code == 2 and "Did you mean 'unet'" in result.output
    result = runner.invoke(app, ["train", "busi-seg", "--out", str(tmp_path / "y"), "--arch", "resnet18"])
    assert result.exit_code == 2 and "classification network" in result.output
    result = runner.invoke(app, ["train", "busi-seg", "--out", str(tmp_path / "e"), "--arch", "seg_ensemble"])
    assert result.exit_code == 2 and "ensemble of trained models" in " ".join(result.output.split())
    result = runner.invoke(app, ["train", "busi-seg", "--out", str(tmp_path / "z"), "--arch-args", "{channels"])
    assert result.exit_code == 2 and "JSON object" in result.output
    for task in ("busi-seg", "monuseg"):  # a value of the wrong kind was an 'unexpected error ... likely a bug'
        result = runner.invoke(app, ["train", task, "--out", str(tmp_path / task), "--arch-args",
                                     '{"channels": [8]}'], terminal_width=300)
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "Option --arch-args: Network 'unet': channels needs at least 2" in said, said


def _shipped() -> Path:
    models = shipped_models()
    if "busi-seg" not in models:
        pytest.fail("no shipped busi-seg model in breastdx/zoo")
    return models["busi-seg"]


def test_predict_with_the_shipped_model(data_root, tmp_path):
    _shipped()
    images = [data_root / "busi" / "benign" / "benign (1).png", data_root / "busi" / "malignant" / "malignant (1).png",
              data_root / "busi" / "normal" / "normal (1).png"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG signature and nothing usable
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "busi-seg", *map(str, images), str(bad), "--out", str(out),
                                 "--batch-size", "2"])
    assert result.exit_code == 1, result.output  # some input failed...
    assert "broken.png" in result.output  # ...and is named
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["source"]).name for r in rows] == [p.name for p in images]  # ...while the others succeeded
    for row, src in zip(rows, images):
        mask = np.asarray(Image.open(out / row["mask"]))
        original = Image.open(src)
        assert mask.shape == (original.height, original.width)
        assert set(np.unique(mask)) <= {0, 255}
        assert int(row["lesion_area_px"]) == int((mask > 0).sum())
        assert row["lesion_area_mm2"] == ""  # BUSI PNGs carry no pixel spacing
        overlay = Image.open(out / row["overlay"])
        assert overlay.size == original.size and overlay.convert("RGB").mode == "RGB"
    lesion = {Path(r["source"]).name: int(r["lesion_area_px"]) for r in rows}
    assert lesion["benign (1).png"] > 0 and lesion["malignant (1).png"] > 0


def test_shipped_model_outputs_are_stable(data_root):
    """Golden values of the frozen model on three real images (tolerance for BLAS differences)."""
    from breastdx.data.images import read_image
    from breastdx.inference.predictor import SegmentationPredictor

    model_dir = _shipped()
    golden_file = Path(__file__).with_name("busi_seg_golden.json")
    if not golden_file.is_file():
        pytest.fail("no golden values recorded: run python tests/tasks/record_golden.py after shipping a model")
    golden = json.loads(golden_file.read_text())
    predictor = SegmentationPredictor.from_dir(model_dir, task="busi-seg")
    for name, want in golden.items():
        image = read_image(data_root / "busi" / name, mode="gray").array
        out = predictor.predict([image])[0]
        assert abs(out.area_px - want["area_px"]) <= max(50, 0.02 * want["area_px"]), name
        assert abs(float(out.prob.mean()) - want["mean_prob"]) < 0.01, name


@pytest.mark.slow
def test_evaluate_the_shipped_model(data_root, tmp_path):
    model_dir = _shipped()
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "busi-seg", "--data-dir", str(data_root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    shipped = json.loads((model_dir / "meta.json").read_text())["metrics"]
    assert metrics["metrics"]["dice"]["value"] == pytest.approx(shipped["dice"]["value"], abs=0.005)



def test_presence_gate_with_the_shipped_classifier(data_root, tmp_path):
    """--presence-model busi-cls empties the segmenter's false lesion on a normal image (4,002 px without the gate,
    see busi_seg_golden.json) and keeps the lesions; predictions.csv gives each image's P(normal)."""
    images = [data_root / "busi" / c / f"{c} (1).png" for c in ("benign", "malignant", "normal")]
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "busi-seg", *map(str, images), "--presence-model", "busi-cls", "--out",
                                 str(out), "--overlays", "false"])
    assert result.exit_code == 0, result.output
    assert "busi-cls called 1 image(s) normal" in result.output
    rows = {Path(r["source"]).stem: r for r in csv.DictReader(open(out / "predictions.csv"))}
    assert rows["normal (1)"]["lesion_found"] == "False" and int(rows["normal (1)"]["lesion_area_px"]) == 0
    assert float(rows["normal (1)"]["p_normal"]) >= 0.3
    assert len(rows["normal (1)"]["p_normal"].split(".")[1]) == 6  # 6 decimals, as every probability (had 4)
    for name, area in (("benign (1)", 1315), ("malignant (1)", 83336)):
        assert float(rows[name]["p_normal"]) < 0.3 and abs(int(rows[name]["lesion_area_px"]) - area) <= 0.02 * area
    result = runner.invoke(app, ["predict", "busi-seg", str(images[0]), "--presence-model", "wdbc", "--out",
                                 str(tmp_path / "bad")])
    assert result.exit_code == 2 and "not a classification model" in result.output
    result = runner.invoke(app, ["predict", "busi-seg", str(images[0]), "--presence-model", "idc", "--out",
                                 str(tmp_path / "bad2")])
    assert result.exit_code == 2 and "The presence model takes rgb images, the segmenter gray ones" in result.output


def test_a_segmentation_network_registered_elsewhere_trains(data_root, split_file, tmp_path):
    """CONTRIBUTING.md's network recipe for a segmentation network: registered in one place (here, the test), it
    trains as ``--arch`` with its own ``--arch-args`` (an argument named ``width`` once clashed with the size
    check's own), and its model folder predicts."""
    from torch import nn

    from breastdx.models.network_registry import register_network
    from breastdx.models.networks import NETWORKS

    @register_network("toy_seg", kind="segmentation")
    def toy_seg(in_channels: int, out_channels: int, *, width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, out_channels, 1))

    try:
        out = tmp_path / "run"
        result = runner.invoke(app, ["train", "busi-seg", "--data-dir", str(data_root), "--out", str(out),
                                     "--split-file", str(split_file), "--arch", "toy_seg", "--arch-args",
                                     '{"width": 6}', *TINY, "--max-cases", "8"])
        assert result.exit_code == 0, result.output
        meta = json.loads((out / "model" / "meta.json").read_text())
        assert meta["architecture"] == "toy_seg" and meta["architecture_args"] == {"width": 6}
        assert "- toy_seg (width=6;" in (out / "model" / "MODEL_CARD.md").read_text()
        image = data_root / "busi" / "benign" / "benign (1).png"
        result = runner.invoke(app, ["predict", "busi-seg", str(image), "--model", str(out / "model"),
                                     "--out", str(tmp_path / "pred"), "--overlays", "false"])
        assert result.exit_code == 0, result.output
    finally:
        NETWORKS._entries.pop("toy_seg", None)


def test_evaluation_gives_intervals_over_lesions_when_two_frames_of_one_are_scored(monkeypatch):
    """A split whose test images hold two frames of one lesion (the default split method since 2026-12-06) gets
    ``metrics_by_group``: resampling images treats the frames as independent and narrows the interval."""
    from types import SimpleNamespace

    from breastdx.tasks import get_task

    task = get_task("busi-seg")
    target = np.zeros((8, 8), bool)
    target[2:5, 2:5] = True
    names = ["a", "a2", "b", "c", "d", "e", "f", "g"]  # a and a2: two frames of one lesion, both missed
    outputs = [SimpleNamespace(mask=np.zeros_like(target) if n.startswith("a") else target, max_prob=0.9,
                               n_components=1, p_normal=None) for n in names]
    monkeypatch.setattr(type(task), "_predict_cases", staticmethod(lambda *a, **k: (outputs, [target] * len(names))))
    cases = [SimpleNamespace(name=n, label="benign") for n in names]
    ev = task._evaluate_cases(None, cases, 500, 0, groups=[["a", "a2"], ["b", "elsewhere"]])
    by_image, by_group = ev["metrics"]["dice"], ev["metrics_by_group"]["dice"]
    assert by_image["value"] == by_group["value"] == pytest.approx(6 / 8)
    assert by_group["n_groups"] == 7 and by_group["n_images"] == 8
    assert by_group["ci95"][0] < by_image["ci95"][0]  # the pair resampled together: a wider interval
    record = task._group_record(ev)
    assert record["metrics_by_group"] is ev["metrics_by_group"] and "7 units" in record["metrics_by_group_note"]
    # no two frames of one lesion among the scored images: image intervals only
    ev = task._evaluate_cases(None, cases, 500, 0, groups=[["a", "elsewhere"]])
    assert "metrics_by_group" not in ev and task._group_record(ev) == {}
