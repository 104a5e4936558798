"""Segmentation predictor: save -> from_dir -> identical outputs, original sizes, postprocessing, bad files (overlays: tests/visualize)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from breastdx.data.transforms import Preprocessing, resize_mask, resize_uint8, restore_size
from breastdx.inference.predictor import (WEIGHTS_FILE, Postprocessing, SegmentationPredictor, load_weights,
                                          save_weights)
from breastdx.models.networks import build_network
from breastdx.models.saved import ModelFolderError, write_meta

ARGS = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}


def _model_dir(tmp_path: Path, **meta_extra) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net, args = build_network("unet", 1, 2, **ARGS)
    d = tmp_path / "model"
    d.mkdir()
    save_weights(net, d / WEIGHTS_FILE)
    write_meta(d, {"task": "busi-seg", "architecture": "unet", "architecture_args": args, "in_channels": 1,
                   "weights_file": WEIGHTS_FILE, "class_names": ["background", "lesion"],
                   "preprocessing": Preprocessing(image_size=32).to_meta(), "threshold": 0.5,
                   "postprocessing": Postprocessing().to_meta(), **meta_extra})
    return d, net


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((37, 53), (64, 40), (32, 32))]


def test_round_trip_gives_identical_outputs(tmp_path):
    d, net = _model_dir(tmp_path)
    loaded = SegmentationPredictor.from_dir(d, task="busi-seg", backend="torch")
    in_memory = SegmentationPredictor(net, json.loads((d / "meta.json").read_text()))
    images = _images()
    a = loaded.predict(images)
    b = in_memory.predict(images)
    for im, x, y in zip(images, a, b):
        assert x.mask.shape == im.shape and x.mask.dtype == bool
        assert x.prob.shape == im.shape and x.prob.dtype == np.float32
        np.testing.assert_array_equal(x.prob, y.prob)
        np.testing.assert_array_equal(x.mask, y.mask)
        assert x.area_px == int(x.mask.sum()) and x.area_mm2 is None
    # batching does not change the result
    one_by_one = SegmentationPredictor.from_dir(d, batch_size=1, backend="torch").predict(images)
    for x, y in zip(a, one_by_one):
        np.testing.assert_allclose(x.prob, y.prob, atol=1e-6)
    # the ONNX Runtime backend (the default for a model folder in float32) agrees within a tight tolerance
    onnx = SegmentationPredictor.from_dir(d, batch_size=2)
    assert onnx.backend == "onnxruntime"
    for x, y in zip(a, onnx.predict(images)):
        np.testing.assert_allclose(x.prob, y.prob, atol=1e-5)


def test_spacing_gives_area_in_mm2(tmp_path):
    d, _ = _model_dir(tmp_path)
    p = SegmentationPredictor.from_dir(d)
    p.postprocessing = Postprocessing(threshold=1e-6)  # everything is lesion
    out = p.predict([np.zeros((10, 20), np.uint8)], spacings=[(0.1, 0.2)])[0]
    assert out.area_px == 200 and out.area_mm2 == pytest.approx(200 * 0.02)
    # the longest diameter: the 10 x 20 pixel image's diagonal, measured per axis in mm (1 mm x 4 mm: about 4.12)
    assert out.max_diameter_px == pytest.approx(21.9317, abs=1e-3) and out.max_diameter_mm == pytest.approx(4.1, abs=1e-3)
    assert p.predict([np.zeros((10, 20), np.uint8)])[0].max_diameter_mm is None


def _output_dtypes(predictor) -> list[torch.dtype]:
    """Record the dtype of the network's output at each forward pass."""
    seen: list[torch.dtype] = []
    predictor.network.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_runs_bfloat16_only_where_native(tmp_path, bf16_cpu, native):
    """A model folder that validates bfloat16 runs in bfloat16 where it is native (with AMX), in float32 elsewhere."""
    bf16_cpu(native)
    d, _ = _model_dir(tmp_path, inference={"validated_dtypes": ["float32", "bfloat16"], "tta": "hflip"})
    assert SegmentationPredictor.from_dir(d).backend == ("torch" if native else "onnxruntime")
    p = SegmentationPredictor.from_dir(d, backend="torch")
    want = "bfloat16" if native else "float32"
    assert p.dtype == want and p.tta == "hflip"
    assert ("native" in p.dtype_reason) and (("no native" in p.dtype_reason) != native)
    seen = _output_dtypes(p)
    out = p.predict(_images())
    assert set(seen) == {torch.bfloat16 if native else torch.float32}
    ref = SegmentationPredictor.from_dir(d, dtype="float32", backend="torch").predict(_images())
    for x, y in zip(out, ref):
        assert np.abs(x.prob - y.prob).max() < 0.05
        if not native:
            np.testing.assert_array_equal(x.prob, y.prob)


def test_old_meta_dtype_key_means_validated_and_float32_only_models_stay_float32(tmp_path, bf16_cpu):
    bf16_cpu("amx")
    d, _ = _model_dir(tmp_path, inference={"dtype": "bfloat16"})  # meta.json of models shipped before 0.2
    assert SegmentationPredictor.from_dir(d).dtype == "bfloat16"
    (tmp_path / "b").mkdir()
    d2, _ = _model_dir(tmp_path / "b")
    p = SegmentationPredictor.from_dir(d2)
    assert p.dtype == "float32" and "validates float32 only" in p.dtype_reason


def test_explicit_bfloat16_is_honoured_with_a_warning_where_emulated(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("breastdx.runtime.bf16_native_cpu", lambda: False)
    d, _ = _model_dir(tmp_path)
    with caplog.at_level("WARNING", logger="breastdx.runtime"):
        p = SegmentationPredictor.from_dir(d, dtype="bfloat16")
    assert p.dtype == "bfloat16"
    assert any("emulated" in r.getMessage() for r in caplog.records)
    seen = _output_dtypes(p)
    p.predict(_images()[:1])
    assert seen == [torch.bfloat16]
    with pytest.raises(ValueError, match="'dtype' option must be one of auto, float32, bfloat16. Got 'half'"):
        SegmentationPredictor.from_dir(d, dtype="half")


def test_model_folder_errors(tmp_path):
    with pytest.raises(ModelFolderError, match="no meta.json"):
        SegmentationPredictor.from_dir(tmp_path)
    d, _ = _model_dir(tmp_path)
    with pytest.raises(ModelFolderError, match="not 'wdbc'"):
        SegmentationPredictor.from_dir(d, task="wdbc")
    meta = json.loads((d / "meta.json").read_text())
    meta["architecture_args"]["channels"] = [8, 16, 32]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="do not fit"):
        SegmentationPredictor.from_dir(d)
    (d / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelFolderError, match="cannot read the weights"):
        load_weights(build_network("unet", 1, 2, **ARGS)[0], d / WEIGHTS_FILE)


def test_predict_files_goes_on_past_bad_files(tmp_path):
    d, _ = _model_dir(tmp_path)
    files = []
    for i, im in enumerate(_images()):
        f = tmp_path / f"img{i}.png"
        Image.fromarray(im).save(f)
        files.append(f)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    p = SegmentationPredictor.from_dir(d, batch_size=2)
    results = list(p.predict_files([files[0], bad, files[1], tmp_path / "missing.png", files[2]]))
    assert [r[0].name for r in results] == ["img0.png", "bad.png", "img1.png", "missing.png", "img2.png"]
    errors = {r[0].name: r[3] for r in results if r[3] is not None}
    assert set(errors) == {"bad.png", "missing.png"} and "not an image" in errors["bad.png"]
    direct = p.predict(_images(), keep_prob=False)
    good = [r for r in results if r[3] is None]
    for (path, rec, out, _), ref in zip(good, direct):
        assert out.mask.shape == rec.shape
        np.testing.assert_array_equal(out.mask, ref.mask)


def test_predict_on_a_folder_names_a_file_that_makes_the_decoder_loop(tmp_path, j2k_zero_box_dicom, monkeypatch):
    """pydicom loops forever on a JPEG 2000 box of length 0: ``breastdx predict`` on a folder holding such a file
    returns, names it as undecodable and predicts the other files (issue 14)."""
    import shutil
    import time

    from typer.testing import CliRunner

    import breastdx.data.decode_worker as decode_worker
    from breastdx.cli import app

    monkeypatch.setattr(decode_worker, "DECODE_TIMEOUT_S", 3.0)
    d, _ = _model_dir(tmp_path)
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(j2k_zero_box_dicom, folder / "a_loop.dcm")
    for i, im in enumerate(_images()):
        Image.fromarray(im).save(folder / f"b{i}.png")
    start = time.monotonic()
    result = CliRunner().invoke(app, ["predict", "busi-seg", "--model", str(d), str(folder), "--out",
                                      str(tmp_path / "out"), "--backend", "torch"])
    assert time.monotonic() - start < 60
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "1 input(s) could not be used" in text and "a_loop.dcm: undecodable: decoding did not finish within 3 s" in text
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 4 and all("b" in r.split(",")[0] for r in rows[1:])


def test_file_names_that_spreadsheets_run_are_written_as_text(tmp_path, monkeypatch):
    """A file name beginning with = + - @ (CSV injection) goes into predictions.csv with a leading apostrophe."""
    import csv

    from breastdx.inference.writers import write_segmentation_predictions

    d, _ = _model_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    names = ['=HYPERLINK("x.example",1).png', "+1.png", "-2.png", "@SUM(1).png", "plain.png"]
    for name, im in zip(names, _images() * 2):
        Image.fromarray(im).save(tmp_path / name)
    run = tmp_path / "run"
    run.mkdir()
    write_segmentation_predictions(SegmentationPredictor.from_dir(d), names, run, overlays=False)
    with open(run / "predictions.csv", newline="") as f:
        sources = sorted(r["source"] for r in csv.DictReader(f))
    assert sources == sorted(["'" + n for n in names[:4]] + ["plain.png"])


def test_a_file_name_that_is_not_utf8_does_not_stop_predictions_csv(tmp_path):
    """A file name with Latin-1 bytes (an old archive or disc) made writing predictions.csv fail after the batch."""
    import csv
    import os

    from breastdx.inference.writers import write_segmentation_predictions

    d, _ = _model_dir(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_images()[0]).save(folder / "plain.png")
    try:
        Image.fromarray(_images()[1]).save(os.fsdecode(os.fsencode(folder) + b"/scan_\xe9.png"))
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take file names that are not UTF-8")
    run = tmp_path / "run"
    run.mkdir()
    rows, failures, _ = write_segmentation_predictions(SegmentationPredictor.from_dir(d), [folder], run,
                                                       overlays=False)
    assert failures == [] and len(rows) == 2
    with open(run / "predictions.csv", newline="", encoding="utf-8") as f:
        written = {Path(r["source"]).name: r for r in csv.DictReader(f)}
    assert sorted(written) == ["plain.png", "scan_\\xe9.png"]
    assert (run / written["scan_\\xe9.png"]["mask"].replace("\\xe9", "\udce9")).is_file()


def test_postprocessing():
    prob = np.zeros((20, 20), np.float32)
    prob[2:8, 2:8] = 0.9  # 36 px
    prob[15:17, 15:17] = 0.8  # 4 px
    mask, n = Postprocessing().apply(prob)
    assert n == 2 and mask.sum() == 40
    mask, n = Postprocessing(keep_largest=True).apply(prob)
    assert n == 1 and mask.sum() == 36
    mask, n = Postprocessing(min_area_fraction=0.05).apply(prob)  # 20 px minimum
    assert n == 1 and mask.sum() == 36
    mask, n = Postprocessing(min_area_fraction=0.5).apply(prob)
    assert n == 0 and not mask.any()
    with pytest.raises(ValueError, match="threshold"):
        Postprocessing(threshold=1.0)


def test_preprocessing_helpers():
    im = np.arange(37 * 53, dtype=np.uint32).reshape(37, 53).astype(np.uint8)
    assert resize_uint8(im, 32).shape == (32, 32)
    with pytest.raises(ValueError, match="uint8"):
        resize_uint8(im.astype(float), 32)
    m = np.zeros((37, 53), bool)
    m[10:30, 10:40] = True
    small = resize_mask(m, 32)
    assert small.dtype == bool and abs(small.mean() - m.mean()) < 0.02
    back = restore_size(torch.rand(32, 32), (37, 53))
    assert back.shape == (37, 53)
    prep = Preprocessing.from_meta(Preprocessing(image_size=48).to_meta())
    assert prep == Preprocessing(image_size=48)
    with pytest.raises(ValueError, match="image_size"):
        Preprocessing(image_size=4)


def test_write_segmentation_predictions(tmp_path):
    import csv

    from breastdx.inference.records import SEGMENTATION_FIELDS
    from breastdx.inference.writers import write_segmentation_predictions

    d, _ = _model_dir(tmp_path)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i, im in enumerate(_images()[:2]):
        Image.fromarray(im).save(folder / f"img{i}.png")
    Image.fromarray(_images()[2]).save(folder / "sub" / "img0.png")  # same stem: written as img0_2
    (folder / "notes.png").write_text("not an image")
    run = tmp_path / "run"
    run.mkdir()
    p = SegmentationPredictor.from_dir(d, batch_size=2)
    rows, failures, seconds = write_segmentation_predictions(p, [folder], run, overlays=True, workers=2)
    assert [Path(f[0]).name for f in failures] == ["notes.png"] and seconds > 0
    with open(run / "predictions.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert list(csv_rows[0]) == ["source", "mask", "overlay", "height", "width", *SEGMENTATION_FIELDS, "spacing_mm",
                                 "spacing_note", "frame", "in_scope", "scope_note"]
    # grey images of the right size, but uniform random noise: flagged by the structure check alone
    assert all(r["in_scope"] == "false" and r["scope_note"].startswith("without spatial structure") for r in csv_rows)
    assert sorted(r["mask"] for r in csv_rows) == ["masks/img0_2_mask.png", "masks/img0_mask.png", "masks/img1_mask.png"]
    for r, row in zip(csv_rows, rows):
        mask = np.asarray(Image.open(run / r["mask"])) > 0
        assert int(r["lesion_area_px"]) == row["lesion_area_px"] == int(mask.sum())
        assert mask.shape == (int(r["height"]), int(r["width"])) and (run / r["overlay"]).is_file()
        assert r["lesion_area_mm2"] == r["lesion_max_diameter_mm"] == r["spacing_mm"] == r["frame"] == ""
        assert r["lesion_found"] == str(mask.any())
    run2 = tmp_path / "run2"
    run2.mkdir()
    rows, _, _ = write_segmentation_predictions(p, [folder / "img1.png"], run2, overlays=False)
    assert rows[0]["overlay"] == "" and not (run2 / "overlays").exists()
    # an input named like the renamed one: each gets files of its own (img0_2 was written twice before)
    Image.fromarray(_images()[1]).save(folder / "img0_2.png")
    run3 = tmp_path / "run3"
    run3.mkdir()
    rows, _, _ = write_segmentation_predictions(p, [folder / "img0.png", folder / "img0_2.png",
                                                    folder / "sub" / "img0.png"], run3, overlays=False)
    assert sorted(r["mask"] for r in rows) == ["masks/img0_2_mask.png", "masks/img0_3_mask.png", "masks/img0_mask.png"]
    assert len(list((run3 / "masks").iterdir())) == 3


def test_restore_size_is_pytorchs_bilinear_without_pytorch():
    rng = np.random.default_rng(1)
    for size, shape in ((32, (37, 53)), (32, (20, 9)), (64, (471, 562)), (16, (16, 16))):
        p = rng.random((size, size), dtype=np.float32)
        want = torch.nn.functional.interpolate(torch.from_numpy(p)[None, None], size=shape, mode="bilinear",
                                               align_corners=False)[0, 0].numpy()
        got = restore_size(p, shape)
        assert got.dtype == np.float32 and got.shape == shape
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_cached_graph_segments_without_pytorch_as_pytorch_does(tmp_path, bf16_cpu):
    """With its ONNX graph cached, a busi-seg folder predicts in a process that never imports PyTorch or MONAI,
    and gives PyTorch's masks."""
    import subprocess
    import sys

    bf16_cpu("none")
    d, _ = _model_dir(tmp_path, inference={"validated_dtypes": ["float32", "bfloat16"], "tta": "hflip"})
    onnx = tmp_path / "onnx"
    assert SegmentationPredictor.from_dir(d, onnx_dir=onnx).backend == "onnxruntime"  # exports once, with PyTorch
    images = _images()
    code = f"""
import sys, json, numpy as np
from breastdx.cli import _set_threads
from breastdx.inference.predictor import SegmentationPredictor
_set_threads(1)  # --threads 1: the session's count, without importing PyTorch for it
p = SegmentationPredictor.from_dir({str(d)!r}, onnx_dir={str(onnx)!r}, dtype="float32")
rng = np.random.default_rng(0)  # as _images()
images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in ((37, 53), (64, 40), (32, 32))]
out = p.predict(images)
np.savez({str(tmp_path / "onnx.npz")!r}, *[o.prob for o in out])
print(json.dumps({{"runner": type(p.runner).__name__, "torch": "torch" in sys.modules, "monai": "monai" in sys.modules,
                  "threads": p.runner.threads, "areas": [o.area_px for o in out]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    reference = SegmentationPredictor.from_dir(d, backend="torch", dtype="float32").predict(images)
    assert facts == {"runner": "CachedGraph", "torch": False, "monai": False, "threads": 1,
                     "areas": [o.area_px for o in reference]}
    probs = np.load(tmp_path / "onnx.npz")
    for k, o in enumerate(reference):
        np.testing.assert_allclose(probs[f"arr_{k}"], o.prob, atol=1e-4)


def test_to_array_puts_channels_first_and_scales_to_one():
    rgb = np.zeros((2, 4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    x = Preprocessing(image_size=16, mode="rgb").to_array(rgb)
    assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32
    assert (x[:, 0] == 1.0).all() and (x[:, 1] == 0.0).all() and np.allclose(x[:, 2], 0.2)
    gray = Preprocessing(image_size=16).to_array(np.full((4, 5), 255, np.uint8))
    assert gray.shape == (1, 4, 5) and (gray == 1.0).all()
    assert Preprocessing(image_size=16).to_tensor(rgb[..., 0]).shape == (2, 1, 4, 5)
