"""Histogram equalisation of network inputs (``Preprocessing.intensity``): golden values, invariance to a scanner's
gain and gamma, the meta round trip, and a saved model that applies it at prediction."""

import json

import numpy as np
import pytest
import torch

from breastdx.data.transforms import INTENSITIES, Preprocessing, equalize_intensity, resize_uint8
from breastdx.inference.predictor import WEIGHTS_FILE, Postprocessing, SegmentationPredictor, save_weights
from breastdx.models.networks import build_network
from breastdx.models.saved import write_meta


def _levels(shape=(48, 40), seed=0) -> np.ndarray:
    """An image of 8 grey levels, 30 apart (each falls in its own histogram bin whatever the gain)."""
    return (np.random.default_rng(seed).integers(0, 8, size=shape) * 30 + 10).astype(np.uint8)


def test_equalize_hist_golden_values():
    # 4 values, each a quarter of the pixels: each becomes its cumulative share, centred in its bin, times 255
    image = np.repeat(np.array([[10, 20, 200, 250]], np.uint8), 4, axis=0)
    out = equalize_intensity(image, "equalize_hist")
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[0], [64, 128, 191, 255])


@pytest.mark.parametrize("change", [lambda a: a // 2, lambda a: (255.0 * (a / 255.0) ** 0.5).round(),
                                    lambda a: 255 - (255 - a) // 3])
def test_equalize_hist_is_invariant_to_monotone_intensity_changes(change):
    """A gain, a gamma or a compression curve: another scanner's setting gives the same network input."""
    image = _levels()
    changed = np.asarray(change(image.astype(np.float64)), dtype=np.uint8)
    assert not np.array_equal(changed, image)
    np.testing.assert_array_equal(equalize_intensity(changed, "equalize_hist"),
                                  equalize_intensity(image, "equalize_hist"))


def test_clahe_is_nearly_invariant_to_gain_and_stretches_contrast():
    rng = np.random.default_rng(1)
    image = (rng.integers(20, 50, size=(64, 64)) * 2).astype(np.uint8)  # a dim, low-contrast image: 40-98, even
    out = equalize_intensity(image, "clahe")
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out.min() == 0 and out.max() == 255  # stretched to the full range
    # the same image at half the gain (no level lost): the min-max stretch before CLAHE undoes it
    np.testing.assert_array_equal(equalize_intensity(image // 2, "clahe"), out)
    # a gamma change is not undone (CLAHE is not invariant to it), but the result stays close
    gamma = (255.0 * (image / 255.0) ** 0.8).round().astype(np.uint8)
    assert 0 < np.abs(equalize_intensity(gamma, "clahe").astype(int) - out.astype(int)).mean() < 12


def test_divide_255_constant_images_and_unknown_names():
    image = _levels()
    assert equalize_intensity(image, "divide_255") is image
    flat = np.full((16, 16), 77, np.uint8)
    for name in INTENSITIES:
        np.testing.assert_array_equal(equalize_intensity(flat, name), flat)  # nothing to equalise: unchanged
    with pytest.raises(ValueError, match="'divide_255', 'equalize_hist', 'clahe'.*got 'zscore'"):
        equalize_intensity(image, "zscore")
    with pytest.raises(ValueError, match="Preprocessing.intensity must be one of"):
        Preprocessing(image_size=32, intensity="zscore")


def test_colour_images_keep_their_shape_and_are_equalised_as_documented():
    """equalize_hist pools the channels: three constant channels of 10, 20 and 200 are a third of the pixels each,
    so they become 1/3, 2/3 and 3/3 of 255 (each channel alone is constant: per channel, nothing would change).
    clahe equalises the value (HSV): R = g, G = g // 2, B = 0 keeps its hue, R is scikit-image's CLAHE of g, B stays 0
    and G half of R (per-channel CLAHE would stretch G to the full range as well)."""
    rgb = np.stack([_levels(seed=s) for s in range(3)], axis=-1)
    for name in ("equalize_hist", "clahe"):
        out = equalize_intensity(rgb, name)
        assert out.shape == rgb.shape and out.dtype == np.uint8
    rgb = np.empty((5, 7, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 200
    out = equalize_intensity(rgb, "equalize_hist")
    np.testing.assert_array_equal(out, np.broadcast_to(np.array([85, 170, 255], np.uint8), rgb.shape))
    g = _levels()
    out = equalize_intensity(np.stack([g, g // 2, np.zeros_like(g)], axis=-1), "clahe")
    from skimage.exposure import equalize_adapthist

    np.testing.assert_array_equal(out[..., 0], np.rint(equalize_adapthist(g, clip_limit=0.01, nbins=256) * 255))
    assert not out[..., 2].any() and np.abs(out[..., 1] - out[..., 0] / 2).max() <= 0.5


def test_preprocessing_equalises_after_resizing_and_round_trips_through_meta():
    image = _levels((90, 70))
    for name in INTENSITIES:
        prep = Preprocessing(image_size=32, intensity=name)
        np.testing.assert_array_equal(prep.resize_image(image), equalize_intensity(resize_uint8(image, 32), name))
        meta = json.loads(json.dumps(prep.to_meta()))
        assert Preprocessing.from_meta(meta) == prep
    assert "CLAHE" in Preprocessing(intensity="clahe").to_meta()["description"]
    assert "histogram equalised" in Preprocessing(intensity="equalize_hist").to_meta()["description"]
    assert "equalis" not in Preprocessing().to_meta()["description"]


@pytest.mark.parametrize("size", ["256", 256.0, 255.5, True, None])
def test_an_image_size_that_is_no_whole_number_is_refused(size):
    """A meta.json ``image_size`` of "256" loaded (int() of it) and 255.5 became 255 silently."""
    with pytest.raises(ValueError, match=r"image_size must be a whole number of pixels, got"):
        Preprocessing.from_meta({"image_size": size, "mode": "gray"})
    assert Preprocessing.from_meta({"image_size": np.int64(64)}).image_size == 64


def test_a_saved_model_equalises_at_prediction(tmp_path):
    """The model folder's meta carries the setting: a gain change of the image does not change the lesion map."""
    torch.manual_seed(0)
    net, args = build_network("unet", 1, 2, channels=[4, 8, 16], strides=[2, 2], num_res_units=1)
    probs = {}
    for name in ("divide_255", "equalize_hist"):
        d = tmp_path / name
        d.mkdir()
        save_weights(net, d / WEIGHTS_FILE)
        write_meta(d, {"task": "busi-seg", "architecture": "unet", "architecture_args": args, "in_channels": 1,
                       "weights_file": WEIGHTS_FILE, "class_names": ["background", "lesion"],
                       "preprocessing": Preprocessing(image_size=32, intensity=name).to_meta(), "threshold": 0.5,
                       "postprocessing": Postprocessing().to_meta()})
        p = SegmentationPredictor.from_dir(d, backend="torch")
        image = _levels((32, 32))
        probs[name] = [r.prob for r in p.predict([image, image // 2])]
    np.testing.assert_array_equal(probs["equalize_hist"][0], probs["equalize_hist"][1])
    assert np.abs(probs["divide_255"][0] - probs["divide_255"][1]).max() > 1e-4
