"""The lesion-presence gate: a classifier's P(normal) at or over the threshold empties a segmenter's mask (area,
components and diameters 0, mm figures 0 where known), in predict_batch as in predict, and predictions.csv says
P(normal); a classifier without a normal class, or a threshold outside (0, 1], is refused."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from breastdx.data.transforms import Preprocessing
from breastdx.inference.predictor import Postprocessing, SegmentationPredictor
from breastdx.inference.presence import PresenceGate
from breastdx.inference.writers import write_segmentation_predictions
from breastdx.models.saved import write_meta


class Bright(torch.nn.Module):  # lesion where the image is brighter than its mean
    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 50 * (x - x.mean(dim=(2, 3), keepdim=True))], dim=1)


class FakeClassifier:
    """P(normal) = the image's mean brightness / 255."""

    class_names = ["normal", "benign", "malignant"]

    def predict_proba(self, images):
        p = np.array([im.mean() / 255 for im in images])
        return np.stack([p, (1 - p) / 2, (1 - p) / 2], axis=1)


def _disc(background: int) -> np.ndarray:
    im = np.full((40, 50), background, np.uint8)
    yy, xx = np.mgrid[:40, :50]
    im[(yy - 20) ** 2 + (xx - 25) ** 2 < 100] = 250
    return im


@pytest.fixture()
def predictor(tmp_path):
    write_meta(tmp_path, {"task": "busi-seg", "architecture": "unet", "architecture_args": {}, "in_channels": 1,
                          "weights_file": "model.safetensors", "class_names": ["background", "lesion"],
                          "preprocessing": Preprocessing(image_size=32).to_meta(), "threshold": 0.5,
                          "postprocessing": Postprocessing().to_meta()})
    return SegmentationPredictor(Bright(), json.loads((tmp_path / "meta.json").read_text()))


def test_the_gate_empties_the_mask_of_an_image_called_normal(predictor, tmp_path):
    dark, bright = _disc(20), _disc(200)  # P(normal) ~ 0.12 and ~ 0.82
    plain = predictor.predict([dark, bright], spacings=[(0.1, 0.1), None])
    assert all(o.area_px > 200 for o in plain) and all(o.p_normal is None for o in plain)
    predictor.presence = PresenceGate(FakeClassifier(), threshold=0.5)
    gated = predictor.predict([dark, bright], spacings=[(0.1, 0.1), None])
    assert gated[0].area_px == plain[0].area_px and gated[0].p_normal == pytest.approx(dark.mean() / 255)
    g = gated[1]
    assert (g.area_px, g.n_components, g.max_diameter_px, g.area_mm2) == (0, 0, 0.0, None) and not g.mask.any()
    assert g.max_prob == plain[1].max_prob and g.p_normal >= 0.5  # the segmenter's own probability stays
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(dark).save(folder / "dark.png")
    Image.fromarray(bright).save(folder / "bright.png")
    run = tmp_path / "run"
    run.mkdir()
    _, failures, _ = write_segmentation_predictions(predictor, [folder], run, overlays=False, workers=1)
    assert not failures
    rows = {r["source"].rsplit("/", 1)[1]: r for r in csv.DictReader(open(run / "predictions.csv"))}
    assert rows["bright.png"]["lesion_found"] == "False" and float(rows["bright.png"]["p_normal"]) >= 0.5
    assert rows["dark.png"]["lesion_found"] == "True" and float(rows["dark.png"]["p_normal"]) < 0.5


def test_a_gate_needs_a_normal_class_and_a_threshold_in_range():
    class NoNormal(FakeClassifier):
        class_names = ["benign", "malignant"]

    with pytest.raises(ValueError, match="have no 'normal' class"):
        PresenceGate(NoNormal())
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        PresenceGate(FakeClassifier(), threshold=0.0)

    class Colour(FakeClassifier):
        class preprocessing:
            mode = "rgb"

    with pytest.raises(ValueError, match="takes rgb images, the segmenter gray ones"):
        PresenceGate(Colour(), image_mode="gray")
