"""Feature-space out-of-distribution score (deep nearest neighbours): golden distances, the threshold fitted on
validation, the bank's round trip, and a classifier folder that flags an image unlike its training images in
``predict`` (CSV and scope note) as in the Python API, with Grad-CAM or without."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from breastdx.data.transforms import Preprocessing
from breastdx.inference.classifier import ClassificationPredictor, save_classifier
from breastdx.inference.ood import (MAX_BANK, OOD_FILE, OodScorer, choose_k, fit_ood, knn_distance, load_bank,
                                    normalise, save_bank)
from breastdx.inference.writers import write_predictions
from breastdx.models.networks import build_network
from breastdx.models.penultimate import penultimate_features


def test_knn_distance_golden_values():
    bank = normalise([[1, 0], [0, 1], [1, 1]])
    x = normalise([[1, 0], [1, 1], [-1, 0]])
    d1 = knn_distance(x, bank, 1)
    np.testing.assert_allclose(d1, [0.0, 0.0, 1.0], atol=1e-6)
    # [-1, 0]: nearest is [0, 1] (cos 0) -> distance 1; second nearest [1,1]/sqrt2 (cos -0.707) -> 1.707
    np.testing.assert_allclose(knn_distance(x[2:], bank, 2), [1 + np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(knn_distance(x[:1], bank, 3), [1.0], atol=1e-6)  # [1,0] vs [0,1]: the 3rd nearest
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        knn_distance(x, bank, 4)
    with pytest.raises(ValueError, match="same F"):
        knn_distance(np.ones((2, 3)), bank, 1)


def test_choose_k():
    assert [choose_k(n) for n in (1, 9, 10, 534, 2000)] == [1, 1, 1, 50, 50]


def test_fit_ood_threshold_is_the_validation_quantile_and_the_bank_is_capped(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(MAX_BANK + 500, 8)) + 3
    val = rng.normal(size=(200, 8)) + 3
    record, bank = fit_ood(train, val, seed=1)
    assert bank.shape == (MAX_BANK, 8) and bank.dtype == np.float16
    assert record["n_bank"] == MAX_BANK and record["k"] == 50 and record["n_calibration"] == 200
    dist = knn_distance(normalise(val), bank, 50)
    assert record["threshold"] == pytest.approx(np.quantile(dist, 0.99), abs=1e-6)
    assert (dist > record["threshold"]).sum() == 2  # 1% of 200
    again, bank2 = fit_ood(train, val, seed=1)
    assert again == record and np.array_equal(bank, bank2)  # the same seed, the same subset
    save_bank(bank, tmp_path / OOD_FILE)
    np.testing.assert_array_equal(load_bank(tmp_path / OOD_FILE), bank.astype(np.float32))
    scorer = OodScorer.from_dir(tmp_path, record)
    far = scorer.distances(-np.ones((1, 8)))  # opposite to every training feature
    assert far[0] > 1.5 and "unlike the training images" in scorer.note(far[0]) and scorer.note(0.0) == ""
    with pytest.raises(ValueError, match="needs training and validation images"):
        fit_ood(train, np.zeros((0, 8)))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors: cannot read the out-of-distribution bank"):
        load_bank(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="must be a file of the model folder"):
        OodScorer.from_dir(tmp_path, {**record, "bank_file": "../x.safetensors"})


def _grey(rng, n, size=40):
    """Smooth dark images with a bright blob: the 'training distribution'."""
    out = []
    for _ in range(n):
        im = rng.normal(40, 8, (size, size))
        cy, cx = rng.integers(10, size - 10, 2)
        yy, xx = np.mgrid[:size, :size]
        im += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40)
        out.append(np.clip(im, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def ood_model(tmp_path_factory):
    torch.manual_seed(0)
    net, args = build_network("compact_cnn", 1, 2, widths=[8, 16])
    net.eval()
    prep = Preprocessing(image_size=32)
    rng = np.random.default_rng(0)

    def feats(images):
        return penultimate_features(net, [prep.to_tensor(np.stack([prep.resize_image(im) for im in images]))])

    record, bank = fit_ood(feats(_grey(rng, 60)), feats(_grey(rng, 30)))
    folder = tmp_path_factory.mktemp("ood-model")
    save_classifier(folder, net, {"task": "breastmnist", "architecture": "compact_cnn", "architecture_args": args,
                                  "in_channels": 1, "class_names": ["benign", "malignant"],
                                  "positive_class": "malignant", "preprocessing": prep.to_meta(), "ood": record,
                                  "inference": {"tta": "hflip"}})
    save_bank(bank, folder / OOD_FILE)
    return folder


def test_predictor_flags_an_image_unlike_the_training_images(ood_model, tmp_path):
    predictor = ClassificationPredictor.from_dir(ood_model, backend="torch")
    rng = np.random.default_rng(5)
    near = _grey(rng, 3)
    far = [np.tile(np.where(np.arange(40) % 4 < 2, 255, 0).astype(np.uint8), (40, 1))]  # stripes
    outs = predictor.predict(near + far)
    dists = [o.ood_distance for o in outs]
    assert max(dists[:3]) < dists[3] and outs[3].ood_note.startswith("unlike the training images")
    assert all(o.ood_note == "" for o in outs[:3])
    with_cam = predictor.predict(near + far, gradcam=True)  # the features of Grad-CAM's forward pass
    np.testing.assert_allclose([o.ood_distance for o in with_cam], dists, rtol=1e-4, atol=1e-5)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, im in enumerate(near + far):
        Image.fromarray(im).save(folder / f"img{i}.png")
    (tmp_path / "run").mkdir()
    _, failures, _ = write_predictions(predictor, [folder], tmp_path / "run", gradcam=False)
    assert not failures
    table = {r["source"].rsplit("/", 1)[1]: r for r in csv.DictReader(open(tmp_path / "run" / "predictions.csv"))}
    assert table["img3.png"]["in_scope"] == "false" and "unlike the training images" in table["img3.png"]["scope_note"]
    assert table["img0.png"]["in_scope"] == "true"
    assert float(table["img3.png"]["ood_distance"]) == pytest.approx(dists[3], abs=1e-4)


def test_a_folder_with_an_unreadable_bank_is_refused(ood_model, tmp_path):
    import shutil

    from breastdx.models.saved import ModelFolderError

    broken = tmp_path / "broken"
    shutil.copytree(ood_model, broken)
    (broken / OOD_FILE).write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFolderError, match="cannot read the out-of-distribution bank"):
        ClassificationPredictor.from_dir(broken)
    meta = json.loads((broken / "meta.json").read_text())
    del meta["ood"]
    (broken / "meta.json").write_text(json.dumps(meta))
    assert ClassificationPredictor.from_dir(broken).ood is None  # no record: no score, as before
