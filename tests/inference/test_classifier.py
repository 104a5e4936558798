"""Classification predictor: save -> from_dir -> identical probabilities; temperature, threshold, TTA, Grad-CAM."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from breastdx.data.transforms import Preprocessing
from breastdx.evaluation.calibration import softmax
from breastdx.inference.classifier import ClassificationPredictor, save_classifier
from breastdx.inference.writers import write_predictions
from breastdx.models.networks import build_network
from breastdx.models.saved import ModelFolderError

NAMES = ["normal", "benign", "malignant"]


def _meta(arch, args, **extra):
    return {"task": "busi-cls", "architecture": arch, "architecture_args": args, "in_channels": 1,
            "class_names": NAMES, "positive_class": "malignant", "preprocessing": Preprocessing(image_size=32).to_meta(),
            "temperature": 1.7, "threshold": 0.3, "inference": {"tta": "none"}, **extra}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    net, args = build_network("unet_multitask", 1, 3, channels=[8, 16, 32], strides=[2, 2])
    folder = tmp_path_factory.mktemp("model")
    save_classifier(folder, net.eval(), _meta("unet_multitask", args))
    return folder, net


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 7 * i, 51), dtype=np.uint8) for i in range(n)]


def test_round_trip_gives_identical_probabilities(model_dir):
    folder, net = model_dir
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["weights_file"] == "model.safetensors" and meta["schema_version"] == 1 and "versions" in meta
    predictor = ClassificationPredictor.from_dir(folder, task="busi-cls")
    images = _images()
    prob = predictor.predict_proba(images)
    prep = Preprocessing(image_size=32)
    with torch.no_grad():
        z = net.eval()(prep.to_tensor(np.stack([prep.resize_image(im) for im in images]))).numpy()
    np.testing.assert_allclose(prob, softmax(z, 1.7), rtol=1e-5, atol=1e-6)  # the temperature from meta
    np.testing.assert_allclose(prob.sum(1), 1.0)
    again = ClassificationPredictor.from_dir(folder).predict_proba(images)
    np.testing.assert_array_equal(prob, again)


def test_labels_at_the_operating_point(model_dir):
    predictor = ClassificationPredictor.from_dir(model_dir[0])
    prob = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.7, 0.05, 0.25]])
    np.testing.assert_array_equal(predictor.labels_from_proba(prob), [0, 2, 0])  # malignant when >= 0.3
    outs = predictor.predict(_images(2))
    assert all(o.label in NAMES and o.cam is None for o in outs)


def test_tta_and_gradcam(model_dir):
    folder, _ = model_dir
    images = _images()
    plain = ClassificationPredictor.from_dir(folder)
    tta = ClassificationPredictor.from_dir(folder, tta="hflip")
    assert not np.allclose(plain.predict_proba(images), tta.predict_proba(images))
    prob, labels, cams = tta.explain(images)
    # Grad-CAM runs PyTorch, the mirror and predict_proba the faster backend (ONNX Runtime): equal within 1e-5
    np.testing.assert_allclose(prob, tta.predict_proba(images), atol=1e-5)
    np.testing.assert_array_equal(labels, tta.labels_from_proba(prob))
    for im, cam in zip(images, cams):
        assert cam.shape == im.shape and 0.0 <= cam.min() and cam.max() <= 1.0
    _, _, per_image = plain.explain(images, method="gradcampp", class_idx=[0, 1, 2])
    assert [c.shape for c in per_image] == [im.shape for im in images]
    outs = plain.predict(images, gradcam=True)
    assert all(o.cam is not None for o in outs)


def test_a_central_square_model_reads_and_explains_the_central_square(model_dir, tmp_path):
    """``source_crop``: the probabilities of a wide image are those of its central square, and its Grad-CAM map
    covers that square only (0 on the sides the network did not see)."""
    _, net = model_dir
    prep = {**Preprocessing(image_size=32).to_meta(), "source_size": 28, "source_crop": "central_square"}
    save_classifier(tmp_path / "m", net.eval(), _meta("unet_multitask", {"channels": [8, 16, 32], "strides": [2, 2]},
                                                      preprocessing=prep))
    predictor = ClassificationPredictor.from_dir(tmp_path / "m")
    wide = np.random.default_rng(3).integers(0, 256, (40, 64), dtype=np.uint8)
    np.testing.assert_allclose(predictor.predict_proba([wide]), predictor.predict_proba([wide[:, 12:52]]), atol=1e-6)
    _, _, (cam,) = predictor.explain([wide], class_idx=2)
    assert cam.shape == (40, 64) and not cam[:, :12].any() and not cam[:, 52:].any() and cam[:, 12:52].max() == 1.0


def test_predict_files_goes_on_past_bad_files(model_dir, tmp_path):
    folder, _ = model_dir
    paths = []
    for i, im in enumerate(_images()):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    predictor = ClassificationPredictor.from_dir(folder, batch_size=2)
    run = tmp_path / "run"
    run.mkdir()
    rows, failures, seconds = write_predictions(predictor, [*paths[:2], bad, paths[2]], run)
    assert [f[0] for f in failures] == [str(bad)]
    assert [r["source"] for r in rows] == [str(p) for p in paths]
    with open(run / "predictions.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert list(csv_rows[0]) == ["source", "height", "width", "p_normal", "p_benign", "p_malignant", "label",
                                 "label_argmax", "threshold", "in_scope", "scope_note", "frame", "gradcam"]
    for r, p in zip(csv_rows, paths):
        overlay = Image.open(run / r["gradcam"])
        w, h = Image.open(p).size  # the overlay, with its legend strip below (colour bar, class, probability, file)
        assert overlay.size[0] == max(w, 240) and overlay.size[1] > h and overlay.mode == "RGB"
        assert abs(sum(float(r[f"p_{c}"]) for c in NAMES) - 1) < 1e-4


def test_cine_loop_is_classified_at_its_first_frame(tmp_path, model_dir):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    frames = np.stack(_images(n=1) * 3)  # (3, 40, 51)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundMultiFrameImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = 40, 51, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.tobytes()
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "IM00001", enforce_file_format=True)  # a PACS name, found in its folder
    run = tmp_path / "run"
    run.mkdir()
    predictor = ClassificationPredictor.from_dir(model_dir[0])
    rows, failures, _ = write_predictions(predictor, [tmp_path / "in"], run, gradcam=False)
    assert not failures and [r["frame"] for r in rows] == ["1 of 3"]
    assert float(rows[0]["p_benign"]) == pytest.approx(float(predictor.predict_proba([frames[0]])[0][1]), abs=1e-5)


def test_bad_folders(tmp_path, model_dir):
    with pytest.raises(ModelFolderError, match="not a model folder"):
        ClassificationPredictor.from_dir(tmp_path)
    folder, _ = model_dir
    with pytest.raises(ModelFolderError, match="not 'breastmnist'"):
        ClassificationPredictor.from_dir(folder, task="breastmnist")
    net, args = build_network("resnet18", 1, 3)
    other = tmp_path / "other"
    save_classifier(other, net, _meta("resnet18", args))
    (other / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())  # wrong weights
    with pytest.raises(ModelFolderError, match="do not fit the network"):
        ClassificationPredictor.from_dir(other)


@pytest.mark.parametrize("native", [True, False])
def test_dtype_follows_the_machine_and_the_model_folder(tmp_path, bf16_cpu, native):
    """bfloat16 where the model validates it and the CPU is native (with AMX); float32 otherwise; Grad-CAM works in
    both."""
    bf16_cpu(native)
    torch.manual_seed(0)
    net, args = build_network("unet_multitask", 1, 3, channels=[8, 16, 32], strides=[2, 2])
    folder = tmp_path / "bf16"
    save_classifier(folder, net.eval(), _meta("unet_multitask", args,
                                              inference={"tta": "none", "validated_dtypes": ["float32", "bfloat16"]}))
    p = ClassificationPredictor.from_dir(folder, backend="torch")
    assert p.dtype == ("bfloat16" if native else "float32")
    seen = []
    p.network.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    images = _images()
    prob = p.predict_proba(images)
    _, _, cams = p.explain(images)
    assert set(seen) == {torch.bfloat16 if native else torch.float32}
    assert len(cams) == len(images) > 0  # zip alone would pass on no map at all
    assert all(c.dtype == np.float32 and c.shape == im.shape for c, im in zip(cams, images))
    ref = ClassificationPredictor.from_dir(folder, dtype="float32").predict_proba(images)
    np.testing.assert_allclose(prob, ref, atol=0.05)
    # a model folder that validates float32 only stays in float32 on any machine
    save_classifier(tmp_path / "fp32", net, _meta("unet_multitask", args))
    assert ClassificationPredictor.from_dir(tmp_path / "fp32").dtype == "float32"
